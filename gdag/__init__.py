"""gdag: a git-native reactive dataflow engine for the command line."""

__version__ = "0.1.0"


def node(
    fn=None,
    *,
    name=None,
    inputs=None,
    publishes=None,
    mode=None,
    when=None,
    timeout=None,
    env=None,
    speculative=None,
):
    """Declare a Python node in a module listed under `[dag] modules` of gdag.toml."""

    def mark(f):
        f.__gdag_node__ = {
            "name": name,
            "inputs": inputs,
            "publishes": publishes,
            "mode": mode,
            "when": when,
            "timeout": timeout,
            "env": env,
            "speculative": speculative,
        }
        return f

    return mark(fn) if fn is not None else mark
