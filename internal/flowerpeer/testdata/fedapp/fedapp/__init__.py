"""fedapp: FedAvg of small numpy arrays, for nodekeys' tests."""
