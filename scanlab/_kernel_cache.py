"""Numba's on-disk cache for kernels built per cell (closures over the cell's step), and for
scanlab's own kernels with safe data files.

A kernel that calls a cell's step is made by a function (``scanlab.cpu.nonlinear.build_kernels``)
as a closure over the step. Numba can keep closures in its cache, but indexes them by a pickle of
what they close over, and a pickled Numba function carries an identifier drawn anew in every
process: such a kernel is compiled again in every process (seconds for a Newton solve).
:func:`jit` indexes it instead by a description that is the same in every process and changes
with anything the compiled code depends on that Numba would notice for a function of its own,
and more:

- each function in the closure (the step, its Jacobian, the routines around them, recursively):
  its module and name, its bytecode and constants, and the size and modification time of the
  file it is defined in (as Numba stamps its own cache);
- the globals each names: modules by name and their file's stamp, functions described the same
  way (so an edited helper in another file is noticed), numbers and strings by value;
- each other value closed over (numbers, strings, tuples of them), and the compile options.

Like Numba's cache it does not notice a changed global array or object. A closure over anything
else (an array, an object) or a function defined outside a file (an interactive session) is
compiled in each process as before.

Every kernel kept on disk, these and scanlab's own (:func:`njit_cached`, for
``numba.njit(cache=True)``), names its data file after its key (:class:`KeyedFiles`): Numba's
numbered data files can be swapped between two kernels saved at once by two processes.
"""

import hashlib
import os
import types
from functools import partial

import numba
from numba.core.caching import CompileResultCacheImpl, FunctionCache, IndexDataCacheFile
from numba.core.dispatcher import Dispatcher

#: Values closed over that are described by their ``repr``.
PLAIN_VALUES = (bool, int, float, complex, str, bytes, type(None))


class Uncacheable(Exception):
    """Something a kernel closes over has no description that holds across processes."""


def jit(**options):
    """A decorator like ``numba.njit(**options)`` whose dispatcher is kept in Numba's on-disk
    cache when the function's closure has a stable description (else compiled in each
    process)."""
    return partial(cached_dispatcher, options=options)


def njit_cached(**options):
    """``numba.njit(cache=True, **options)`` for scanlab's own kernels, their data files named
    after their keys (:class:`KeyedFiles`): Numba's numbered ones can be swapped between two
    signatures compiled at once by two processes."""

    def decorate(function):
        dispatcher = numba.njit(cache=True, **options)(function)
        dispatcher._cache._cache_file = KeyedFiles.of(dispatcher._cache)
        return dispatcher

    return decorate


def cached_dispatcher(function, options: dict):
    """``numba.njit(**options)(function)``, indexed in Numba's cache by its description."""
    dispatcher = numba.njit(**options)(function)
    try:
        identity = describe(function) + describe_options(options)
        dispatcher._cache = KeyedCache(function, hashlib.sha256(identity.encode()).hexdigest())
    except (Uncacheable, RuntimeError):  # RuntimeError: Numba finds no directory to cache in
        pass
    return dispatcher


class QuietCacheImpl(CompileResultCacheImpl):
    """Numba's cache of compiled functions, without its warning for code it cannot keep (a
    step that reads a large global array): such a kernel is compiled in each process, as it
    was before caching."""

    def check_cachable(self, cres) -> bool:
        return not cres.library.has_dynamic_globals and all(x.can_cache for x in cres.lifted)


class KeyedCache(FunctionCache):
    """Numba's cache of one function, indexed by the signature, the CPU and ``identity``, in
    files of its own (:class:`KeyedFiles`)."""

    _impl_class = QuietCacheImpl

    def __init__(self, py_func, identity: str):
        super().__init__(py_func)
        self.identity = identity
        self._cache_file = KeyedFiles.of(self, f"-{identity[:16]}")

    def _index_key(self, sig, codegen):
        return (sig, codegen.magic_tuple(), self.identity)


class KeyedFiles(IndexDataCacheFile):
    """Numba's index and data files for the kernels of one description, each kernel's data file
    named after its key.

    Numba numbers a function's data files in the order they are saved, from the index as each
    process last read it: two processes saving different kernels of one function at once
    (pytest's workers, Dask's) may both write data file 1, and the index left maps one kernel to
    the other's code, which a later process then runs, silently (found when a cell's loop ran
    another cell's step). Every cell's kernels had shared the index and data files of the
    closure they are built from. Here each description has its own index, and a kernel's data
    file depends only on its key: concurrent saves may lose an index entry (compiled again
    later), never point one at another kernel's code."""

    def __init__(self, cache_path, filename_base, source_stamp):
        super().__init__(cache_path, filename_base, source_stamp)
        self._filename_base = filename_base

    @classmethod
    def of(cls, cache: FunctionCache, suffix: str = "") -> "KeyedFiles":
        """The files of Numba's ``cache`` of one function, their names' base ending in
        ``suffix``."""
        impl = cache._impl
        return cls(cache._cache_path, impl.filename_base + suffix, impl.locator.get_source_stamp())

    def save(self, key, data):
        """Write the data file of ``key``, then its index entry."""
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
        data_name = f"{self._filename_base}.{digest}.nbc"
        self._save_data(data_name, data)
        overloads = self._load_index()
        if overloads.get(key) != data_name:
            overloads[key] = data_name
            self._save_index(overloads)


def describe(value, seen: tuple = ()) -> str:
    """A description of ``value`` that is the same in every process (see the module's text);
    raises :class:`Uncacheable` where there is none. ``seen``: the functions being described
    around it (a function that calls itself is named, not described again)."""
    if isinstance(value, Dispatcher):
        return f"jit({describe(value.py_func, seen)}, {describe_options(value.targetoptions)})"
    if isinstance(value, types.FunctionType):
        name = f"{value.__module__}.{value.__qualname__}"
        if value in seen:
            return f"{name}(again)"
        seen = (*seen, value)
        code = value.__code__
        closure = tuple(cell.cell_contents for cell in value.__closure__ or ())
        return (
            f"{name}[{file_stamp(code.co_filename)}, {describe_code(code)}]"
            f"({', '.join(describe(item, seen) for item in closure)})"
            f"{{{describe_globals(value, seen)}}}"
        )
    if isinstance(value, PLAIN_VALUES):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, tuple):
        return f"({', '.join(describe(item, seen) for item in value)})"
    raise Uncacheable(type(value).__name__)


def describe_globals(function, seen: tuple) -> str:
    """The globals ``function``'s code names, which Numba compiles in as they are now: modules
    by name and their file's stamp, functions described, numbers and strings by value, anything
    else by its type (Numba's own cache does not notice such a value change either)."""
    namespace = function.__globals__
    parts = []
    for name in sorted(set(function.__code__.co_names) & namespace.keys()):
        value = namespace[name]
        if isinstance(value, types.ModuleType):
            # With its file's stamp where it has one: scanlab.math's module of functions for
            # cells (``scanlab.math.MATH_FOR_CELLS``) changes with scanlab/math.py.
            source = getattr(value, "__file__", None)
            stamp = f"[{file_stamp(source)}]" if source and os.path.exists(source) else ""
            parts.append(f"{name}=module:{value.__name__}{stamp}")
        elif isinstance(value, (Dispatcher, types.FunctionType, *PLAIN_VALUES)):
            parts.append(f"{name}={describe(value, seen)}")
        else:
            kind = type(value).__qualname__
            parts.append(
                f"{name}={kind}:{getattr(value, '__module__', '')}.{getattr(value, '__name__', '')}"
            )
    return ", ".join(parts)


def describe_options(options: dict) -> str:
    """Compile options in a fixed order (sets, such as fastmath flags, sorted)."""
    return repr(
        sorted(
            (name, sorted(v) if isinstance(v, set | frozenset) else v)
            for name, v in options.items()
        )
    )


def describe_code(code: types.CodeType) -> str:
    """A hash of ``code``'s bytecode, constants (nested code included) and names."""
    constants = (
        describe_code(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts
    )
    text = f"{code.co_code.hex()}|{'|'.join(constants)}|{code.co_names}"
    return hashlib.sha256(text.encode()).hexdigest()


def file_stamp(path: str) -> str:
    """``path``, its modification time and size: where a function's source comes from."""
    try:
        status = os.stat(path)
    except OSError:
        raise Uncacheable(f"no source file {path!r}") from None
    return f"{path}:{status.st_mtime_ns}:{status.st_size}"
