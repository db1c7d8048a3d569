import gdag


@gdag.node(inputs={"n": "count"}, publishes=["half"])
def halve(n: int) -> float:
    return n / 2
