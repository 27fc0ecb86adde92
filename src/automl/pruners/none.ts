/** The pruner of an experiment without early stopping. */
import { PruneDecision, type FinishedTrial, type Pruner } from '../contract.js';

/** Never stops a trial. */
export class NopPruner implements Pruner {
  report(_number: number, _step: number, _value: number): PruneDecision {
    return PruneDecision.Continue;
  }

  tell(_trial: FinishedTrial): void {}
}
