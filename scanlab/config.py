"""Tunables of scanlab's kernels, in one place.

Kernels receive these values as arguments (Numba freezes module globals at compile time), so tests
can shrink them to exercise chunk and block boundaries on tiny inputs, and users can adapt them to
their machine. The numbers are justified by ``benchmarks/RESULTS.md``.
"""

from dataclasses import dataclass

#: Fastmath flags of every CPU kernel: fused multiply-add only. Never ``nnan``/``ninf``: NaN and
#: Inf must propagate as IEEE 754 says.
FASTMATH = {"contract"}

#: Fastmath flags of the CPU kernels whose inner loops are dot products (matrix times vector):
#: they may also reassociate sums, which lets LLVM vectorise the reductions (6x at n = 64 with
#: a constant matrix). The order of a sum changes; NaN and Inf propagate all the same.
FASTMATH_DOT_PRODUCTS = {"contract", "reassoc"}


@dataclass
class CPUConfig:
    """Tunables of the CPU kernels (``scanlab.cpu``).

    Attributes
    ----------
    channel_block_bytes : int
        Bytes of a row of channels per task of the ``"sequential"`` method. Below a page, two
        threads sharing each row stall the prefetchers: one thread streaming whole rows is faster.
    cache_bytes : int
        Bytes of ``a`` and ``b`` one thread streams per cache block of the ``"scan"`` method; its
        second pass over the block reads them back from cache instead of memory.
    auto_scan_min_length : int
        ``method="auto"`` runs ``"sequential"`` below this many time steps (or with one
        thread); from it on, the kernel measured faster on this machine for the dtype, thread
        count and number of channels (``scanlab.wisdom``).
        For ``linear_recurrence_matrix``, ``"auto"`` takes ``"scan"`` from this many steps on
        when there are at least ``systems * (n + 2)`` threads: the scan does ``n + 2`` times the
        work of the sequential loop, which is parallel over systems.
    auto_scan_max_row_bytes : int or None
        An override of the measurement: ``"auto"`` takes ``"scan"`` (from
        ``auto_scan_min_length`` steps on) exactly when a row of channels is at most this many
        bytes. ``None`` (the default): measure.
    calibrate_after : float
        Seconds ``"auto"`` runs the loop on a kind of problem not measured yet before it
        measures the methods on it, in each process: a measurement costs a few milliseconds
        once the kernels are compiled, but compiling the scan costs seconds, which a script
        that solves a problem once must not pay (the loop is never much slower than the best
        method). ``0``: measure at the first call. ``scanlab tune`` measures every kind at once.
    calibration_elements : int
        Size of the synthetic problem each kernel is timed on, when ``"auto"`` measures a kind
        of problem (a few milliseconds, plus compiling the kernels if not cached).
    auto_recheck_runs : int
        ``"auto"`` times every run it chooses and takes the method it saw faster in this process
        (a busy core can make the scan slower than the loop); it runs the other method again
        after this many runs of a kind and size of problem, times how much slower that method
        was seen (so rechecks cost about ``1 / auto_recheck_runs`` of the time), to notice when
        conditions change back; one the measurement prefers sooner, after 2, 4, 8, ... of
        those runs (see ``scanlab.cpu.auto``).
    streaming_store_bytes : int or None
        Results of the ``"sequential"`` method (time first, real dtypes, rows of whole cache
        lines), and of the ``"scan"`` of one series (on a cache line), of at least this many
        bytes are written with non-temporal stores, which skip
        reading the result's lines into the cache first (up to 4/3 faster when the arrays do not
        fit in it; ``scanlab.cpu.streaming``) but leave the result out of the cache. ``None``
        (the default): from three quarters of this machine's last-level cache (as glibc's
        ``memcpy`` decides), where this machine writes faster so: measured once per method and
        dtype after ``calibrate_after`` seconds of such results (kept as wisdom), then by the
        runs seen, as ``"auto"`` chooses a method (``scanlab.cpu.auto.streaming_choice``): on
        an AMD Zen 4 VM the sequential method took 1.1-1.6x as long with them, the scan 0.9x.
    shared_min_elements : int or None
        Kernels that hand tasks to the pool's threads (``scanlab.cpu.threads.share_out``), and
        Numba's parallel kernels (``threads_for``), use other threads for problems of at least
        this many elements; smaller ones run on the calling thread alone. ``None`` (the
        default): twice the time this machine takes to wake a sleeping thread, in nanoseconds
        (``scanlab.cpu.threads.start_latency``, measured once per process): on a KVM guest of
        AMD Zen 5 a wake-up took 45-150 us, and two rows of a filter of 16384 steps ran in 54
        us on one thread, 77 us shared (the helper started after the caller had done the work;
        ``benchmarks/RESULTS.md``).
    wisdom : str or None
        Where the measurements are kept: ``"default"`` (``scanlab.wisdom.default_path()``, in
        the user's cache directory), a file path, or ``None`` to keep them in this process only.
    nonlinear_auto_newton_min_threads : int
        ``nonlinear_recurrence(method="auto")`` runs Newton's method only with at least this
        many threads, and more threads than sequences (else the sequential loop, parallel over
        sequences, keeps every thread busy). An iteration of Newton costs several sequential
        passes and it takes a few: see ``benchmarks/RESULTS.md``.
    dask_auto_newton_min_threads : int
        ``scanlab.dask.nonlinear_recurrence(strategy="auto")`` runs Newton over the chunks only
        with at least this many worker threads of a ``distributed`` cluster per batch chunk, and
        as many chunks along time; else it carries the state from chunk to chunk, which cost
        12-15 times less work for ParaGRU (``benchmarks/RESULTS.md``, measured on 2 workers
        only).
    """

    channel_block_bytes: int = 4096
    cache_bytes: int = 1024 * 1024
    auto_scan_min_length: int = 16384
    auto_scan_max_row_bytes: int | None = None
    calibrate_after: float = 1.0
    calibration_elements: int = 2**20
    auto_recheck_runs: int = 32
    streaming_store_bytes: int | None = None
    shared_min_elements: int | None = None
    wisdom: str | None = "default"
    nonlinear_auto_newton_min_threads: int = 32
    dask_auto_newton_min_threads: int = 32


#: The configuration used by the CPU solvers; change its attributes to tune them.
cpu = CPUConfig()


@dataclass
class CUDAConfig:
    """Tunables of the CUDA kernels (``scanlab.cuda``).

    Attributes
    ----------
    threads_per_block : int
        Threads per block of every kernel; a power of two for the ``"scan"`` method.
    items_per_thread : int
        Consecutive time steps each thread of the ``"scan"`` method composes sequentially before
        the block-wide scan (reduce-then-scan). A block stages ``threads_per_block *
        items_per_thread`` elements each of ``a`` and ``b`` in shared memory, which must stay
        within 48 KiB: 4 with 256 threads fits every dtype, complex128 included (41 KiB).
    channels_per_block : int
        Most channels one block of the ``"scan"`` method covers, a power of two. Its threads form
        ``(lanes, threads_per_block // lanes)`` with ``lanes = min(channels_per_block, next power
        of two >= D)``: 32 lanes make every warp read whole 32-element row segments, and the
        remaining threads split time.
    auto_sequential_min_channels : int
        ``method="auto"`` runs one thread per channel (``"sequential"``) from this many channels
        on, or when there are fewer than ``auto_scan_min_length`` steps; else ``"scan"``. Not
        yet tuned on a GPU: enough channels to give every multiprocessor of a large GPU several
        warps.
    auto_scan_min_length : int
        See ``auto_sequential_min_channels``. For ``linear_recurrence_matrix``, the channels
        are ``systems * n``.
    single_pass_scan : bool
        Whether the ``"scan"`` method of ``linear_recurrence`` runs the single-pass decoupled
        look-back scan (reads ``a`` and ``b`` once) instead of the reduce-then-scan (twice). Off
        until it has been run and measured on a GPU: it is tested only under the simulator,
        which runs blocks one after another.
    matrix_chunk_length : int
        Steps per chunk of the ``"scan"`` method of ``linear_recurrence_matrix``, composed
        sequentially (by one thread per chunk and system, or a block for more than 4 states),
        at least 2; each level of the scan is this many times shorter than the one below. Not
        yet tuned on a GPU.
    reduce_items_per_thread : int
        Products each thread of the linear VJPs' gradient sums on GPU arrays adds up before
        adding its sum to the result atomically (fewer: more threads, more atomic additions).
        Not yet tuned on a GPU.
    nonlinear_auto_newton_min_work : int
        ``nonlinear_recurrence(method="auto")`` on the GPU runs Newton (quasi-Newton for dense
        cells of more than 4 states) when ``T * n`` is at least this, else the loop (one thread
        per sequence). From one H100 run (``benchmarks/RESULTS.md``): Newton was 0.2-0.7x the
        loop at ``T * n = 2**13`` and 1.1-12x from ``2**16`` on, for one sequence.
    """

    threads_per_block: int = 256
    items_per_thread: int = 4
    channels_per_block: int = 32
    auto_sequential_min_channels: int = 16384
    auto_scan_min_length: int = 256
    single_pass_scan: bool = False
    matrix_chunk_length: int = 32
    reduce_items_per_thread: int = 256
    nonlinear_auto_newton_min_work: int = 65536


#: The configuration used by the CUDA solvers; change its attributes to tune them.
cuda = CUDAConfig()
