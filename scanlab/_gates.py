"""The gates of the layers :class:`scanlab.nn.GILR` and :class:`scanlab.nn.GILRLSTM`, one
element at a time: from the pre-activations to the gates and the coefficients of the layers'
linear recurrences, and from their gradients back to the pre-activations' gradients.

Scalar functions in the operands' precision, inlined by Numba into the layers' CPU kernels
(:mod:`scanlab.cpu.layer_gates`) and CUDA kernels (:mod:`scanlab.cuda.layer_gates`), which
therefore compute the same values. Inlined, not called: a CPU loop over calls that return a
tuple does not vectorise (GILR's gates in float32: 24 ns an element called, 6.5 inlined, on
2026-12-07's 2-core Zen 3). The sigmoid and tanh are :mod:`scanlab.math`'s (exactly 0 or 1
where ``exp`` overflows, NaN where the inputs hold NaN).
"""

from numba import njit

from scanlab import math as smath


@njit(inline="always")
def gilr_gate(pre_gate, pre_candidate):
    """GILR's gate ``g = sigmoid(pre_gate)``, candidate ``j = tanh(pre_candidate)`` and the
    recurrence's input ``(1 - g) j``."""
    gate, candidate = smath.sigmoid(pre_gate), smath.tanh(pre_candidate)
    return gate, candidate, (type(gate)(1) - gate) * candidate


@njit(inline="always")
def gilr_gradient(dgate, ddrive, gate, candidate):
    """The gradients of GILR's two pre-activations, given those of the recurrence's
    coefficient ``g`` (``dgate``) and input ``(1 - g) j`` (``ddrive``)."""
    closed = type(gate)(1) - gate
    return (
        (dgate - ddrive * candidate) * gate * closed,
        ddrive * closed * (type(gate)(1) - candidate * candidate),
    )


@njit(inline="always")
def lstm_gate(pre_forget, pre_input, pre_output, pre_candidate):
    """GILR-LSTM's forget, input and output gates (sigmoids), candidate (tanh) and the cells'
    input ``input_gate * candidate``."""
    input_gate, candidate = smath.sigmoid(pre_input), smath.tanh(pre_candidate)
    forget, output_gate = smath.sigmoid(pre_forget), smath.sigmoid(pre_output)
    return forget, input_gate, output_gate, candidate, input_gate * candidate


@njit(inline="always")
def lstm_gradient(dforget, dinput, dy, forget, input_gate, output_gate, candidate, cells):
    """The gradients of GILR-LSTM's four pre-activations, given those of the cells'
    coefficient (``dforget``) and input (``dinput``) and of the output
    ``output_gate * cells`` (``dy``)."""
    one = type(forget)(1)
    return (
        dforget * forget * (one - forget),
        dinput * candidate * input_gate * (one - input_gate),
        dy * cells * output_gate * (one - output_gate),
        dinput * input_gate * (one - candidate * candidate),
    )
