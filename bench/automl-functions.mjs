// Test functions for the sampler benchmarks (minimized), with the bounds the benchmarks use.
// bench/peers/optuna_samplers.py defines the same functions and bounds for Optuna.

/** Branin–Hoo, 2-D; three global minima of 0.397887. */
export function branin([x1, x2]) {
  const b = 5.1 / (4 * Math.PI ** 2);
  const c = 5 / Math.PI;
  const t = 1 / (8 * Math.PI);
  return (x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * Math.cos(x1) + 10;
}

const H6_ALPHA = [1.0, 1.2, 3.0, 3.2];
const H6_A = [
  [10, 3, 17, 3.5, 1.7, 8],
  [0.05, 10, 17, 0.1, 8, 14],
  [3, 3.5, 1.7, 10, 17, 8],
  [17, 8, 0.05, 10, 0.1, 14],
];
const H6_P = [
  [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
  [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
  [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.665],
  [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
];

/** Hartmann 6-D on [0, 1]^6; global minimum −3.32237. */
export function hartmann6(x) {
  let total = 0;
  for (let i = 0; i < 4; i++) {
    let inner = 0;
    for (let j = 0; j < 6; j++) inner += H6_A[i][j] * (x[j] - H6_P[i][j]) ** 2;
    total += H6_ALPHA[i] * Math.exp(-inner);
  }
  return -total;
}

/** Rosenbrock in any dimension; global minimum 0 at (1, …, 1). */
export function rosenbrock(x) {
  let total = 0;
  for (let i = 0; i < x.length - 1; i++)
    total += 100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2;
  return total;
}

/** The benchmark set: name → function, bounds per dimension, known optimum. */
export const FUNCTIONS = {
  branin: {
    fn: branin,
    bounds: [
      [-5, 10],
      [0, 15],
    ],
    optimum: 0.397887,
  },
  hartmann6: { fn: hartmann6, bounds: Array.from({ length: 6 }, () => [0, 1]), optimum: -3.32237 },
  rosenbrock5: { fn: rosenbrock, bounds: Array.from({ length: 5 }, () => [-2, 2]), optimum: 0 },
};
