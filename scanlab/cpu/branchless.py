"""A choice between two values that compiles to a select, never to a branch.

Numba writes ``a if condition else b`` as a branch, which LLVM turns into a select only where it
judges the branch unpredictable enough; in a loop whose dependency chain runs through the
choice it often keeps (or makes) the branch, betting on the condition being predictable. On
data it is not: a kernel that tests every sample for NaN mispredicts at every missing value
pandas-style data has at random (one series of 10**7 samples with 10% missing took 1.5x the
time of one without, with half missing 4x). :func:`select_unpredictable` emits LLVM's
``select`` with ``!unpredictable`` metadata (as Rust's ``std::hint::select_unpredictable``),
which LLVM keeps a select: a blend or masked move, both values computed every step.
"""

from numba import types
from numba.extending import intrinsic


@intrinsic
def select_unpredictable(typingctx, condition, if_true, if_false):
    """``if_true if condition else if_false``, both already computed, without a branch."""
    if not isinstance(condition, types.Boolean) or if_true != if_false:
        raise TypeError(
            f"select_unpredictable needs a boolean and two values of one type, got {condition}, "
            f"{if_true} and {if_false}"
        )

    def codegen(context, builder, signature, args):
        value = builder.select(*args)
        value.set_metadata("unpredictable", builder.module.add_metadata([]))
        return value

    return if_true(condition, if_true, if_false), codegen
