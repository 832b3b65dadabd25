"""wasm_orch: write a wasm-orch sub-agent in Python, as the Rust SDK does in Rust.

Subclass `Agent`, implement `run(self, cx)` returning anything JSON can hold, and expose an
instance as `Agent` in your app module (`componentize-py` looks for it there):

    import wasm_orch

    class WordCount(wasm_orch.Agent):
        capabilities = ["text.word-count"]
        def run(self, cx):
            wasm_orch.progress(1.0, "done")
            return {"words": len(cx.params["text"].split())}

    Agent = wasm_orch.export(WordCount)

JSON, the generated bindings and the WIT error variants stay in here. Raise `InvalidInput`,
`Failed` or `Unavailable` to fail the task with that kind; any other exception fails it as
`failed`, with its message.
"""

import json

from componentize_py_types import Err
from wit_world.exports import agent as _agent
from wit_world.imports import blackboard as _blackboard
from wit_world.imports import status as _status
from wit_world.imports import tools as _tools
from wit_world.imports import secrets as _secrets
from wit_world.imports import wasm_orch_agent_types as _types


class InvalidInput(Exception):
    """The task's input does not fit: never retried."""


class Failed(Exception):
    """The task failed."""


class Unavailable(Exception):
    """Something the task needs is unavailable: worth retrying."""


class Context:
    """What a task receives: its parameters, where it runs, its upstream outcomes."""

    def __init__(self, task_input):
        try:
            self.params = json.loads(task_input.params)
        except ValueError as e:
            raise InvalidInput(f"parameters are not JSON: {e}")
        t = task_input.task
        self.run_id, self.node, self.branch = t.run_id, t.node, t.branch
        self.attempt, self.tenant = t.attempt, t.tenant
        self._upstream = task_input.upstream

    def upstream(self):
        """Every upstream output, in `depends_on` order (an upstream failure raises)."""
        out = []
        for up in self._upstream:
            if isinstance(up.outcome, _types.UpstreamOutcome_Output):
                out.append(json.loads(up.outcome.value))
            else:
                f = up.outcome.value
                raise InvalidInput(
                    f"upstream task `{up.node}` ended {name(f.status)} ({name(f.kind)}): {f.message}"
                )
        return out



def name(value):
    """The contract's name of an enum value (`TaskStatus.TIMED_OUT` is `timed-out`)."""
    return value.name.lower().replace("_", "-")


def progress(fraction, message=""):
    _status.progress(float(fraction), str(message))


def partial(data):
    _status.partial(json.dumps(data))


def log(message, level="info"):
    _status.log(getattr(_types.Level, level.upper()), str(message))


def bb_get(key):
    """(value, version), or None when the key is absent."""
    try:
        entry = _blackboard.get(key)
    except Err as e:
        raise Failed(f"blackboard `{key}`: {e.value}")
    return None if entry is None else (json.loads(entry.value), entry.version)


def bb_put(key, value):
    try:
        return _blackboard.put(key, json.dumps(value))
    except Err as e:
        raise Failed(f"blackboard `{key}`: {e.value}")


def bb_update(key, f):
    """Read-modify-write `key` with `f(old or None)` until no other writer interferes."""
    while True:
        current = bb_get(key)
        value = f(None if current is None else current[0])
        try:
            version = _blackboard.compare_and_swap(
                key, None if current is None else current[1], json.dumps(value)
            )
            return value, version
        except Err as e:
            if not isinstance(e.value, _blackboard.BlackboardError_Conflict):
                raise Failed(f"blackboard `{key}`: {e.value}")


def tool(name, input):
    """Call a host tool with a JSON-able input; its JSON output."""
    try:
        return json.loads(_tools.invoke(name, json.dumps(input)))
    except Err as e:
        raise Failed(f"tool `{name}`: {e.value}")


def secret(name):
    try:
        return _secrets.get(name)
    except Err as e:
        raise Failed(f"secret `{name}`: {e.value}")


class Agent:
    """Subclass it: set `capabilities`, `name`, `version`, `description`; implement `run`."""

    name = "python-agent"
    version = "0.1.0"
    description = ""
    capabilities = []

    def run(self, cx):
        raise NotImplementedError


def export(agent_class):
    """The `Agent` export componentize-py expects, around an instance of `agent_class`."""
    inner = agent_class()

    class Exported:
        def describe(self):
            return _agent.Info(
                name=inner.name,
                version=inner.version,
                description=inner.description,
                capabilities=list(inner.capabilities),
            )

        def run(self, task_input):
            try:
                output = inner.run(Context(task_input))
                return json.dumps(output)
            except InvalidInput as e:
                raise Err(_types.AgentError_InvalidInput(str(e)))
            except Unavailable as e:
                raise Err(_types.AgentError_Unavailable(str(e)))
            except Err:
                raise
            except Exception as e:  # a bug or a Failed: the task fails, with its message
                raise Err(_types.AgentError_Failed(f"{type(e).__name__}: {e}"))

    return Exported
