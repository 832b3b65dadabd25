"""wasm_orch_testing: test a Python sub-agent in plain CPython, without a host or a build.

It stands in for the bindings componentize-py generates (`wit_world`, `componentize_py_types`)
with a fake host, so an app module that uses `wasm_orch` imports and runs as it would in a
component. Call `install()` before importing the app:

    import wasm_orch_testing as t
    t.install()
    import app

    outcome = t.TestRun({"items": ["a"]}).blackboard("shared/tally", {}).sleep_tool().run(app.Agent)
    assert outcome.output["added"] == 1
    assert outcome.blackboard["shared/tally"] == {"a": 1}

The fake blackboard scopes keys as the host does: plain keys are the task's branch's own,
`shared/...` keys are written only by compare-and-swap, other branches' keys are read-only.
Tools and secrets the test does not give are denied.
"""

import enum
import json
import sys
import types as _pytypes
from dataclasses import dataclass
from typing import List, Optional

_host = None  # the fake host of the running TestRun


def _need_host():
    if _host is None:
        raise RuntimeError("host calls work only inside wasm_orch_testing.TestRun.run")
    return _host


class Err(Exception):
    def __init__(self, value):
        super().__init__(value)
        self.value = value


@dataclass
class Ok:
    value: object


@dataclass
class Some:
    value: object


def _module(name, **attrs):
    m = _pytypes.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


@dataclass
class Task:
    run_id: str
    node: str
    branch: str
    attempt: int
    tenant: str


class TaskStatus(enum.Enum):
    FAILED = 0
    TIMED_OUT = 1
    OUT_OF_FUEL = 2
    MEMORY_EXCEEDED = 3
    TRAPPED = 4
    OUTPUT_REJECTED = 5
    CANCELLED = 6
    SKIPPED = 7
    BLOCKED = 8
    BUDGET_EXHAUSTED = 9


class ErrorKind(enum.Enum):
    INVALID_INPUT = 0
    FAILED = 1
    UNAVAILABLE = 2
    TRAP = 3
    OUT_OF_FUEL = 4
    TIMEOUT = 5
    MEMORY_LIMIT = 6
    OUTPUT_TOO_LARGE = 7
    OUTPUT_NOT_JSON = 8
    HOST = 9
    CANCELLED = 10
    DEPENDENCY = 11
    BLOCKED = 12
    BUDGET = 13
    ERROR_BUDGET = 14
    CLAIMED = 15
    INTERRUPTED = 16
    WORKER_LOST = 17


@dataclass
class UpstreamFailure:
    status: TaskStatus
    kind: ErrorKind
    message: str


@dataclass
class UpstreamOutcome_Output:
    value: str


@dataclass
class UpstreamOutcome_Failed:
    value: UpstreamFailure


@dataclass
class Upstream:
    node: str
    outcome: object


@dataclass
class TaskInput:
    task: Task
    params: str
    upstream: List[Upstream]


@dataclass
class AgentError_InvalidInput:
    value: str


@dataclass
class AgentError_Failed:
    value: str


@dataclass
class AgentError_Unavailable:
    value: str


class Level(enum.Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


@dataclass
class Entry:
    value: str
    version: int


@dataclass
class BlackboardError_Conflict:
    value: Optional[Entry]


@dataclass
class BlackboardError_Denied:
    value: str


@dataclass
class ToolError_NotFound:
    value: str


@dataclass
class ToolError_Denied:
    value: str


@dataclass
class ToolError_InvalidInput:
    value: str


@dataclass
class ToolError_Failed:
    value: str


@dataclass
class SecretError_Denied:
    value: str


@dataclass
class SecretError_Revoked:
    value: str


@dataclass
class Info:
    name: str
    version: str
    description: str
    capabilities: List[str]


def install():
    """Puts the fake bindings where componentize-py's would be (idempotent)."""
    if "wit_world" in sys.modules and getattr(sys.modules["wit_world"], "_fake", False):
        return
    _module("componentize_py_types", Err=Err, Ok=Ok, Some=Some, Result=object)
    _module("wit_world", _fake=True)
    _module("wit_world.exports")
    _module("wit_world.exports.agent", Info=Info)
    _module("wit_world.imports")
    _module(
        "wit_world.imports.wasm_orch_agent_types",
        Task=Task, TaskInput=TaskInput, Upstream=Upstream, UpstreamFailure=UpstreamFailure,
        UpstreamOutcome_Output=UpstreamOutcome_Output, UpstreamOutcome_Failed=UpstreamOutcome_Failed,
        AgentError_InvalidInput=AgentError_InvalidInput, AgentError_Failed=AgentError_Failed,
        AgentError_Unavailable=AgentError_Unavailable, Level=Level,
        TaskStatus=TaskStatus, ErrorKind=ErrorKind,
    )
    _module(
        "wit_world.imports.status",
        progress=lambda f, m: _need_host().progress.append((f, m)),
        partial=lambda d: _need_host().partials.append(json.loads(d)),
        log=lambda level, m: _need_host().logs.append((level.name.lower(), m)),
    )
    _module(
        "wit_world.imports.blackboard",
        Entry=Entry, BlackboardError_Conflict=BlackboardError_Conflict,
        BlackboardError_Denied=BlackboardError_Denied,
        get=lambda k: _need_host().bb_get(k),
        put=lambda k, v: _need_host().bb_put(k, v),
        compare_and_swap=lambda k, e, v: _need_host().bb_cas(k, e, v),
        list_keys=lambda p: sorted(k for k in _need_host().board if k.startswith(p)),
    )
    _module(
        "wit_world.imports.tools",
        ToolError_NotFound=ToolError_NotFound, ToolError_Denied=ToolError_Denied,
        ToolError_InvalidInput=ToolError_InvalidInput, ToolError_Failed=ToolError_Failed,
        invoke=lambda n, i: _need_host().tool(n, i),
    )
    _module(
        "wit_world.imports.secrets",
        SecretError_Denied=SecretError_Denied, SecretError_Revoked=SecretError_Revoked,
        get=lambda n: _need_host().secret(n),
    )


class Outcome:
    """What a run of the agent did. `output` is its JSON output decoded (None if it failed);
    `error` is `(kind, message)` with kind `invalid-input`, `failed` or `unavailable`."""

    def __init__(self, host, output, error):
        self.output, self.error = output, error
        self.progress, self.partials, self.logs = host.progress, host.partials, host.logs
        self.blackboard = {k: json.loads(v) for k, (v, _) in host.board.items()}
        self.tool_calls, self.secrets_read = host.tool_calls, host.secrets_read


class _Host:
    def __init__(self):
        self.branch = ""
        self.board, self.tools, self.secrets = {}, {}, {}
        self.progress, self.partials, self.logs = [], [], []
        self.tool_calls, self.secrets_read = [], []

    def _key(self, key):
        own = f"branches/{self.branch}/"
        return key[len(own):] if key.startswith(own) else key

    def _writable(self, key, cas):
        key = self._key(key)
        if key.startswith("branches/"):
            raise Err(BlackboardError_Denied("another branch's keys are read-only"))
        if key.startswith("shared/") and not cas:
            raise Err(BlackboardError_Denied("shared keys are written with compare-and-swap"))
        return key

    def bb_get(self, key):
        found = self.board.get(self._key(key))
        return None if found is None else Entry(found[0], found[1])

    def bb_put(self, key, value):
        key = self._writable(key, False)
        version = self.board.get(key, ("", 0))[1] + 1
        self.board[key] = (value, version)
        return version

    def bb_cas(self, key, expected, value):
        key = self._writable(key, True)
        current = self.board.get(key)
        if (current[1] if current else None) != expected:
            raise Err(BlackboardError_Conflict(current and Entry(current[0], current[1])))
        version = (current[1] if current else 0) + 1
        self.board[key] = (value, version)
        return version

    def tool(self, name, input):
        self.tool_calls.append((name, json.loads(input)))
        if name not in self.tools:
            raise Err(ToolError_Denied(f"tool `{name}` is not granted (give it with TestRun.tool)"))
        return json.dumps(self.tools[name](json.loads(input)))

    def secret(self, name):
        self.secrets_read.append(name)
        if name not in self.secrets:
            raise Err(SecretError_Denied(f"secret `{name}` is not granted"))
        return self.secrets[name]


class TestRun:
    """One task: its parameters, where it runs, its upstream outcomes and the fake host."""

    __test__ = False  # not a test class, whatever test runners think of the name

    def __init__(self, params, node="task", attempt=1, tenant="default"):
        install()
        self.params = json.dumps(params)
        self.node, self.attempt, self.tenant = node, attempt, tenant
        self.upstreams = []
        self.host = _Host()

    def upstream(self, node, output):
        self.upstreams.append(Upstream(node, UpstreamOutcome_Output(json.dumps(output))))
        return self

    def upstream_failed(self, node, status, kind, message):
        """A failed upstream; `status` and `kind` by their contract names (`timed-out`)."""
        failure = UpstreamFailure(_enum(TaskStatus, status), _enum(ErrorKind, kind), message)
        self.upstreams.append(Upstream(node, UpstreamOutcome_Failed(failure)))
        return self

    def blackboard(self, key, value):
        self.host.board[key] = (json.dumps(value), 1)
        return self

    def tool(self, name, answer):
        self.host.tools[name] = answer
        return self

    def sleep_tool(self):
        return self.tool("sleep", lambda _input: {})

    def secret(self, name, value):
        self.host.secrets[name] = value
        return self

    def run(self, exported):
        """Runs the app's `Agent` export (the class `wasm_orch.export` returns)."""
        global _host
        self.host.branch = f"test.{self.node}"
        task = Task("test-run", self.node, self.host.branch, self.attempt, self.tenant)
        _host = self.host
        try:
            output = json.loads(exported().run(TaskInput(task, self.params, self.upstreams)))
            return Outcome(self.host, output, None)
        except Err as e:
            kind = {
                AgentError_InvalidInput: "invalid-input",
                AgentError_Failed: "failed",
                AgentError_Unavailable: "unavailable",
            }.get(type(e.value), "failed")
            return Outcome(self.host, None, (kind, e.value.value))
        finally:
            _host = None


def _enum(cls, name):
    try:
        return cls[name.upper().replace("-", "_")]
    except KeyError:
        known = ", ".join(v.name.lower().replace("_", "-") for v in cls)
        raise ValueError(f"`{name}` is not a {cls.__name__}; one of: {known}") from None
