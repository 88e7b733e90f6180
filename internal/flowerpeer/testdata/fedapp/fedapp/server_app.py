"""fedapp's ServerApp: FedAvg of two small arrays over a few rounds."""

import numpy as np
from flwr.app import ArrayRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg on every SuperNode the SuperLink has, then print the result."""
    rounds = int(context.run_config["num-server-rounds"])
    arrays = ArrayRecord([np.zeros((2, 3)), np.zeros(4)])
    evaluate = float(context.run_config["fraction-evaluate"])
    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=evaluate, min_available_nodes=2)
    result = strategy.start(grid=grid, initial_arrays=arrays, num_rounds=rounds)
    final = result.arrays.to_numpy_ndarrays()
    # Each ClientApp adds 1 to every value in each round.
    print(f"fedapp: done after {rounds} rounds, mean {float(np.mean(final[0])):.1f}", flush=True)
