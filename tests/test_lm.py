"""The batched Levenberg-Marquardt solver on problems with known minimisers."""

import numpy as np

from mor._numerics.lm import levenberg_marquardt


class Rosenbrock:
    """``r = [10 (x2 - x1^2), 1 - x1]`` per row, scaled by a row factor; minimum at (1, 1).
    Rows listed in ``bad`` are inadmissible wherever ``x1 > 2`` (trial points there are
    rejected)."""

    class Point:
        def __init__(self, x, res, scale, ok):
            self.x, self.res, self.scale, self.ok = x, res, scale, ok
            self.cost = np.sum(res**2, axis=1)

        def take(self, mask):
            return Rosenbrock.Point(self.x[mask], self.res[mask], self.scale[mask], self.ok[mask])

    def __init__(self, scale):
        self.scale = np.asarray(scale, dtype=float)

    def evaluate(self, x, rows):
        s = self.scale[rows, None]
        res = s * np.stack([10 * (x[:, 1] - x[:, 0] ** 2), 1 - x[:, 0]], axis=1)
        return self.Point(x, res, s[:, 0], x[:, 0] <= 2)

    def normal_equations(self, point):
        x, s = point.x, point.scale[:, None, None]
        jac = s * np.stack([np.stack([-20 * x[:, 0], 10 * np.ones(len(x))], axis=1),
                            np.stack([-np.ones(len(x)), np.zeros(len(x))], axis=1)], axis=1)
        return jac.transpose(0, 2, 1) @ jac, (jac.transpose(0, 2, 1) @ point.res[..., None])[..., 0]


def test_every_row_reaches_its_minimum_and_never_rises():
    problem = Rosenbrock([1.0, 1e-3, 1e3, 1.0])
    x0 = np.array([[-1.2, 1.0], [-1.2, 1.0], [0.5, -0.5], [1.0, 1.0]])
    x, used, _ = levenberg_marquardt(problem, x0, max_iter=200, ftol=0.0)
    np.testing.assert_allclose(x, 1.0, atol=1e-6)
    assert used[3] <= 1  # already at the minimum: the first trial cannot improve on it
    start = problem.evaluate(x0, np.arange(4)).cost
    assert np.all(problem.evaluate(x, np.arange(4)).cost <= start)


def test_an_inadmissible_start_is_returned_unchanged():
    problem = Rosenbrock([1.0, 1.0])
    x0 = np.array([[3.0, 0.0], [-1.2, 1.0]])
    x, used, _ = levenberg_marquardt(problem, x0, max_iter=200, ftol=0.0)
    np.testing.assert_array_equal(x[0], x0[0])
    assert used[0] == 0
    np.testing.assert_allclose(x[1], 1.0, atol=1e-6)


def test_the_budget_bounds_the_trial_points():
    problem = Rosenbrock([1.0])
    x, used, _ = levenberg_marquardt(problem, np.array([[-1.2, 1.0]]), max_iter=3)
    assert used[0] == 3
    assert problem.evaluate(x, np.arange(1)).cost[0] < problem.evaluate(
        np.array([[-1.2, 1.0]]), np.arange(1)).cost[0]
