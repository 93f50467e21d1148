"""Optimisers for NumPy parameters, such as the ``params`` of :mod:`scanlab.nn.layers`, in place."""

import math

import numpy as np

from scanlab._arrays import numeric_array


def flatten(groups, name: str) -> list:
    """``(key, array)`` pairs of a dict of arrays or a list of such dicts."""
    if isinstance(groups, dict):
        groups = [groups]
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        raise TypeError(f"{name} must be a dict of arrays or a list of dicts of arrays")
    return [
        ((index, key), value) for index, group in enumerate(groups) for key, value in group.items()
    ]


class Adam:
    r"""Adam (Kingma & Ba 2015), with optional clipping of the gradients' global norm.

    For each parameter ``p`` with gradient ``g``, at step ``t``:

    .. math::

        m \leftarrow \beta_1 m + (1 - \beta_1) g, \quad
        v \leftarrow \beta_2 v + (1 - \beta_2) g^2, \quad
        p \leftarrow p - \mathrm{lr}
            \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon}

    (PyTorch's ``torch.optim.Adam`` without weight decay).

    Parameters
    ----------
    params : dict or list of dict
        Name -> ndarray (a layer's ``params``), or a list of such dicts: the arrays are updated
        in place. They must be float arrays; the moments are kept in their dtype.
    lr : float, optional
        The step size.
    betas : (float, float), optional
        The decay rates of the moments, each in ``[0, 1)``.
    eps : float, optional
        Added to the square root of the second moment.
    max_grad_norm : float, optional
        If given, every step first scales all gradients together so that their global norm
        (over every array) is at most this.

    Attributes
    ----------
    steps : int
        The number of steps taken.

    Examples
    --------
    Minimise ``(w - 3)^2``:

    >>> import numpy as np
    >>> from scanlab.nn import Adam
    >>> params = {"w": np.zeros(1)}
    >>> optimiser = Adam(params, lr=0.1)
    >>> for _ in range(500):
    ...     norm = optimiser.step({"w": 2 * (params["w"] - 3)})
    >>> params["w"].round(3)
    array([3.])
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        *,
        max_grad_norm: float | None = None,
    ):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if len(betas) != 2 or not all(0 <= beta < 1 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas}")
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps}")
        if max_grad_norm is not None and not max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be positive or None, got {max_grad_norm}")
        self.params = flatten(params, "params")
        for (index, key), value in self.params:
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise TypeError(f"params[{index}][{key!r}] must be a float ndarray, got {value!r}")
        self.lr, self.betas, self.eps, self.max_grad_norm = lr, tuple(betas), eps, max_grad_norm
        self.moments = [(np.zeros_like(value), np.zeros_like(value)) for _, value in self.params]
        self.steps = 0

    def step(self, grads) -> float:
        """Update the parameters in place from ``grads`` (the structure of ``params``).

        Returns
        -------
        norm : float
            The gradients' global norm, before any clipping.
        """
        given = dict(flatten(grads, "grads"))
        expected = [key for key, _ in self.params]
        if sorted(given) != sorted(expected):
            raise ValueError(f"grads must have the keys of params {expected}, got {sorted(given)}")
        gradients = []
        for key, value in self.params:
            gradient = numeric_array(f"grads{list(key)}", given[key])
            if gradient.shape != value.shape:
                raise ValueError(
                    f"grads{list(key)} must have its parameter's shape {value.shape}, "
                    f"got {gradient.shape}"
                )
            gradients.append(gradient)
        norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in gradients))
        scale = 1.0
        if self.max_grad_norm is not None and norm > self.max_grad_norm:
            scale = self.max_grad_norm / norm
        self.steps += 1
        beta1, beta2 = self.betas
        step_size = self.lr / (1 - beta1**self.steps)
        correction = math.sqrt(1 - beta2**self.steps)
        for (_, value), gradient, (mean, square) in zip(
            self.params, gradients, self.moments, strict=True
        ):
            gradient = gradient * scale
            mean *= beta1
            mean += (1 - beta1) * gradient
            square *= beta2
            square += (1 - beta2) * gradient * gradient
            value -= step_size * mean / (np.sqrt(square) / correction + self.eps)
        return norm


__all__ = ["Adam"]
