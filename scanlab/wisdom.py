"""Per-machine "wisdom": what the solvers measured on this machine, kept between processes.

``method="auto"`` chooses between kernels by timing them on the machine that runs them (as FFTW
does with its plans) instead of by thresholds fitted to one machine: the first time a kind of
problem is solved, both kernels run on a synthetic problem of its kind and size, and the times are
stored here, in a JSON file per machine (its CPU model, family and core count in the name) and
revision of the kernels (a digest of their source: measurements of other kernels do not carry
over), next to Numba's cache. ``scanlab info`` shows it, ``scanlab tune`` measures again, and
``scanlab.config.cpu.wisdom`` overrides where it lives (or, ``None``, turns storing off).

Example
-------
>>> import scanlab.wisdom
>>> sorted(scanlab.wisdom.entries())  # doctest: +SKIP
['linear float64 channels<=1 elements<=1048576 threads=2', ...]
"""

import functools
import hashlib
import json
import os
import platform
import re
import threading
from pathlib import Path

from scanlab import config

#: Serialises reads and writes of the file by threads of one process.
LOCK = threading.Lock()
#: Entries read from or written to the file, by path, so a process reads it once.
LOADED: dict[Path | None, dict] = {}


@functools.cache
def cpu_fields() -> dict:
    """The first processor's fields in ``/proc/cpuinfo`` (empty where there is none); read once
    per process."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


@functools.cache
def cpu_caches() -> tuple:
    """``(level, kind, bytes)`` of the first processor's caches as Linux lists them (kind
    "Data", "Instruction" or "Unified"); empty where there is no such list. Read once per
    process."""
    caches = []
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = (
                (index / name).read_text().strip() for name in ("level", "type", "size")
            )
        except OSError:
            continue
        units = {"K": 1024, "M": 1024**2, "G": 1024**3}
        digits = size.rstrip("KMG")
        if level.isdigit() and digits.isdigit():
            caches.append((int(level), kind, int(digits) * units.get(size[len(digits) :], 1)))
    return tuple(caches)


@functools.cache
def last_level_cache_bytes() -> int | None:
    """Bytes of the largest data cache the first processor reaches, or None where unknown
    (worked out once: the sequential kernel asks on every call)."""
    sizes = [size for _, kind, size in cpu_caches() if kind != "Instruction"]
    return max(sizes, default=None)


@functools.cache
def cpu_model() -> str:
    """The CPU's model name and, where Linux gives them, its family and model numbers (one name
    may cover several generations: AMD's VMs say "AMD EPYC" for Zen 4 and Zen 5 alike, whose
    wisdom differs); ``platform.processor()`` elsewhere. Read once per process
    (``method="auto"`` asks for it on every call)."""
    fields = cpu_fields()
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return name or "unknown CPU"


@functools.cache
def kernels_revision() -> str:
    """A digest of the CPU kernels' source (``scanlab/cpu``, and ``scanlab/_filters.py``, whose
    filtering over time ``auto`` measures): what the measurements are of."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for source in [*sorted((package / "cpu").glob("*.py")), package / "_filters.py"]:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:12]


def default_path() -> Path:
    """``$XDG_CACHE_HOME/scanlab/wisdom-<cpu>-<cores>cores-<kernels>.json`` (``~/.cache`` by
    default; ``<kernels>``: :func:`kernels_revision`)."""
    return default_path_under(os.environ.get("XDG_CACHE_HOME"), os.environ.get("HOME"))


@functools.cache
def default_path_under(cache_home: str | None, home: str | None) -> Path:
    """``default_path()`` for these environment variables, worked out once (``method="auto"``
    asks for it on every call)."""
    cache = Path(cache_home or Path.home() / ".cache")
    machine = re.sub(r"[^A-Za-z0-9]+", "-", cpu_model()).strip("-").lower()
    name = f"wisdom-{machine}-{os.cpu_count()}cores-{kernels_revision()}.json"
    return cache / "scanlab" / name


def path() -> Path | None:
    """Where wisdom is kept: ``config.cpu.wisdom`` if set, ``None`` to keep none."""
    setting = config.cpu.wisdom
    if setting is None:
        return None
    return default_path() if setting == "default" else Path(setting)


def entries() -> dict:
    """Every stored measurement, by key (a copy)."""
    location = path()
    if location is None:
        return {}
    with LOCK:
        return dict(loaded(location))


def loaded(location: Path | None) -> dict:
    """The entries of the file at ``location``, read once per process (an unreadable or
    malformed file counts as empty: wisdom is only ever a cache of measurements); ``None``:
    the entries of this process only."""
    if location is None:
        return LOADED.setdefault(None, {})
    if location not in LOADED:
        try:
            LOADED[location] = dict(json.loads(location.read_text()))
        except (OSError, ValueError, TypeError):
            LOADED[location] = {}
    return LOADED[location]


def known(key: str):
    """The stored measurement ``key``, or None."""
    with LOCK:
        return loaded(path()).get(key)


def recall(key: str, measure):
    """The stored measurement ``key``, or ``measure()``'s result, stored (when it can be)."""
    result = known(key)
    if result is None:
        result = measure()
        remember(key, result)
    return result


def remember(key: str, result) -> None:
    """Store ``result`` under ``key``; a location that cannot be written keeps it in memory."""
    location = path()
    with LOCK:
        stored = loaded(location)
        stored[key] = result
        if location is None:
            return
        try:
            location.parent.mkdir(parents=True, exist_ok=True)
            temporary = location.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps(stored, indent=1, sort_keys=True))
            os.replace(temporary, location)
        except OSError:
            pass


def forget() -> None:
    """Drop every stored measurement (``scanlab tune`` measures them again)."""
    location = path()
    with LOCK:
        LOADED[location] = {}
        if location is None:
            return
        try:
            location.unlink()
        except OSError:
            pass
