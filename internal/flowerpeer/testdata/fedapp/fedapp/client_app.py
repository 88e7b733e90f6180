"""fedapp's ClientApp: "training" adds 1 to every value."""

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Return the arrays plus 1, as from one example."""
    arrays = [a + 1 for a in msg.content["arrays"].to_numpy_ndarrays()]
    content = RecordDict(
        {"arrays": ArrayRecord(arrays), "metrics": MetricRecord({"num-examples": 1})}
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Report the mean of the first array, from one example."""
    first = msg.content["arrays"].to_numpy_ndarrays()[0]
    metrics = MetricRecord({"mean": float(first.mean()), "num-examples": 1})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
