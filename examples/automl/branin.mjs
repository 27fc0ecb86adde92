// A trial module: `export default async (params, trial) => value`.
// It pretends to train for `trial.maxSteps` epochs; the loss approaches the Branin value of
// (x1, x2) as epochs go by. After each epoch it reports; the scheduler may stop it early.
const { PI, cos } = Math;

function branin(x1, x2) {
  const b = 5.1 / (4 * PI * PI);
  const c = 5 / PI;
  const t = 1 / (8 * PI);
  return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - t) * cos(x1) + 10;
}

export default async function train({ x1, x2 }, trial) {
  const target = branin(x1, x2);
  let loss = target;
  for (let epoch = 1; epoch <= (trial.maxSteps ?? 9); epoch++) {
    await new Promise((resolve) => setTimeout(resolve, 20)); // one "epoch" of work
    loss = target + 20 / epoch;
    if (await trial.report(epoch, { loss, epoch })) break; // pruned: stop now
  }
  return { loss };
}
