"""Property tests: no equivalent spelling of a forbidden setting gets past baseline or restricted.

The daemon accepts many spellings of one meaning (capability case and
``CAP_`` prefix, ``..`` and ``//`` in paths, ``00`` for root, ``:`` for ``=``
in security options).  These tests generate spellings and mix them with
harmless settings, and require the same decision as the plain spelling.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.model import CanonicalRequest, Operation, Peer
from dockgate.policy import load_policy
from dockgate.policy.rules import compile_policy
from dockgate.policy.source import parse_yaml

ROOT = Path(__file__).resolve().parents[2]
BASELINE = load_policy(str(ROOT / "policies" / "baseline.yaml"))
RESTRICTED = load_policy(str(ROOT / "policies" / "restricted.yaml"))
PROFILES = st.sampled_from([BASELINE, RESTRICTED])
PEER = Peer("main", "unix", "@", uid=1000)
# No per-example deadline: other suites share the machine, and a slow example is
# not a wrong one.
relaxed = settings(deadline=None)

HARDENED = {"CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "Memory": 1 << 28,
            "NanoCpus": 10**9, "PidsLimit": 100}


def create(hc: dict[str, Any], user: str = "1000:1000") -> CanonicalRequest:
    ep = Operation("container.create", "POST", "/containers/create", "json")
    body = {"Image": "busybox", "User": user, "HostConfig": {**HARDENED, **hc}}
    return CanonicalRequest("POST", ep, "/containers/create", body=body)


def exec_create(body: dict[str, Any]) -> CanonicalRequest:
    ep = Operation("exec.create", "POST", "/containers/{id}/exec", "json")
    return CanonicalRequest("POST", ep, "/containers/c/exec", body={"Cmd": ["sh"], **body})


def mixed_case(s: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(s), max_size=len(s)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(s, flips, strict=True))
    )


def test_hardened_request_is_allowed() -> None:
    """A create that meets every restricted and baseline requirement is allowed by both profiles (so
    the denial properties below are not vacuous)."""
    assert RESTRICTED.decide(create({}), PEER).verdict == "allow"
    assert BASELINE.decide(create({}), PEER).verdict == "allow"


# -- capabilities ------------------------------------------------------------------

FORBIDDEN_CAPS = ["SYS_ADMIN", "SYS_MODULE", "SYS_PTRACE", "NET_ADMIN", "NET_RAW",
                  "DAC_READ_SEARCH", "SYS_RAWIO", "BPF", "ALL"]


@st.composite
def cap_spelling(draw: st.DrawFn, names: list[str]) -> str:
    name = draw(st.sampled_from(names))
    prefix = "" if name == "ALL" else draw(st.sampled_from(["", "CAP_"]))
    return draw(mixed_case(prefix + name))


@relaxed
@given(PROFILES, cap_spelling(FORBIDDEN_CAPS), st.lists(cap_spelling(["NET_BIND_SERVICE"])),
       st.randoms())
def test_forbidden_capability_never_passes(policy: Any, bad: str, ok: list[str], rnd: Any) -> None:
    """Property: a forbidden capability in any spelling, in any position among allowed ones, is
    denied by the capabilities rule of every profile."""
    caps = [*ok, bad]
    rnd.shuffle(caps)
    d = policy.decide(create({"CapAdd": caps}), PEER)
    assert d.verdict == "deny" and d.rule == "capabilities", (caps, d)


@relaxed
@given(cap_spelling(["NET_BIND_SERVICE"]), mixed_case("ALL"))
def test_allowed_capability_spellings_pass(cap: str, all_: str) -> None:
    """Property: NET_BIND_SERVICE in any spelling, with ALL dropped in any case, passes restricted.
    """
    d = RESTRICTED.decide(create({"CapAdd": [cap], "CapDrop": [all_]}), PEER)
    assert d.verdict == "allow", d


# -- namespaces --------------------------------------------------------------------

NS_FIELDS = ["PidMode", "IpcMode", "NetworkMode", "UTSMode", "UsernsMode", "CgroupnsMode"]
space = st.sampled_from(["", " ", "\t"])


@st.composite
def host_mode(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["host", "path"]))
    core = draw(mixed_case("host")) if kind == "host" else draw(
        st.sampled_from(["ns:/proc/1/ns/net", "/proc/self/ns/pid", "NS:/run/netns/x"]))
    return draw(space) + core + draw(space)


@relaxed
@given(PROFILES, st.sampled_from(NS_FIELDS), host_mode())
def test_host_namespaces_never_pass(policy: Any, field: str, mode: str) -> None:
    """Property: a host namespace mode in any spelling is denied by every profile in every namespace
    field."""
    d = policy.decide(create({field: mode}), PEER)
    assert d.verdict == "deny", (field, mode, d)


@relaxed
@given(st.sampled_from(NS_FIELDS), mixed_case("container"), st.text("abc123", min_size=1))
def test_container_namespaces_never_pass_restricted(field: str, word: str, ident: str) -> None:
    """Property: joining another container's namespace, in any case, is denied by restricted."""
    d = RESTRICTED.decide(create({field: f"{word}:{ident}"}), PEER)
    assert d.verdict == "deny", (field, word, d)


# -- host paths --------------------------------------------------------------------

segment = st.text("abcdefgh", min_size=1, max_size=4)


@st.composite
def obfuscated(draw: st.DrawFn, target: list[str]) -> str:
    """A path equal to /target after cleaning: detours (``x/..``), ``.``, ``//``, trailing ``/``."""
    out = ""
    for seg in target:
        for _ in range(draw(st.integers(0, 2))):
            detour = draw(st.sampled_from(["/.", "//", "/" + draw(segment) + "/.."]))
            out += detour
        out += "/" * draw(st.integers(1, 3)) + seg
    return out + draw(st.sampled_from(["", "/", "//", "/."]))


ALLOW = compile_policy(parse_yaml(
    "name: a\nrules:\n  - id: paths\n"
    "    host_paths: {allow: ['/srv/data'], deny: ['/srv/data/private']}\n",
    "a.yaml"))


@relaxed
@given(st.lists(segment, max_size=3), st.data())
def test_paths_outside_the_allowlist_never_pass(tail: list[str], data: st.DataObject) -> None:
    """Property: a host path outside the allowed root, however obfuscated and whether bound, mounted
    or given as a local volume device, is denied by the allowlist policy and the profiles."""
    target = ["etc", *tail] if data.draw(st.booleans()) else ["srv", "data", "private", *tail]
    raw = data.draw(obfuscated(target))
    how = data.draw(st.sampled_from(["bind", "mount", "volume"]))
    if how == "bind":
        mode = data.draw(st.sampled_from(["", ":ro", ":z", ":ro,rslave"]))
        hc: dict[str, Any] = {"Binds": [f"{raw}:/x{mode}"]}
    elif how == "mount":
        hc = {"Mounts": [{"Type": "bind", "Source": raw, "Target": "/x"}]}
    else:
        hc = {"Mounts": [{"Type": "volume", "Target": "/x", "VolumeOptions": {"DriverConfig": {
            "Options": {"type": "none", "o": "bind", "device": raw}}}}]}
    assert ALLOW.decide(create(hc), PEER).verdict == "deny", raw
    for policy in (BASELINE, RESTRICTED):
        assert policy.decide(create(hc), PEER).verdict == "deny", raw


@relaxed
@given(st.lists(segment, max_size=3), st.data())
def test_paths_inside_the_allowlist_pass(tail: list[str], data: st.DataObject) -> None:
    """Property: an obfuscated spelling of a path under the allowed root still passes."""
    tail = [s for s in tail if s != "private"]
    raw = data.draw(obfuscated(["srv", "data", *tail]))
    assert ALLOW.decide(create({"Binds": [f"{raw}:/x"]}), PEER).verdict == "allow", raw


# -- users -------------------------------------------------------------------------


@st.composite
def root_user(draw: st.DrawFn) -> str:
    user = draw(st.sampled_from(["root", "0" * draw(st.integers(1, 5)), "+0", "-0", "+00"]))
    group = draw(st.sampled_from(["", ":0", ":root", ":1000", ":00"]))
    return user + group


@relaxed
@given(root_user())
def test_root_never_passes_restricted(user: str) -> None:
    """Property: root in any spelling is denied by restricted on create and exec, and baseline
    records it as the root-user audit finding."""
    assert RESTRICTED.decide(create({}, user=user), PEER).verdict == "deny", user
    assert RESTRICTED.decide(exec_create({"User": user}), PEER).verdict == "deny", user
    found = BASELINE.evaluate(exec_create({"User": user}), PEER).audit
    assert [f.rule for f in found] == ["root-user"], user


@relaxed
@given(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1))
def test_numeric_non_root_users_pass_restricted(uid: int, gid: int) -> None:
    """Property: any numeric non-root uid:gid passes restricted."""
    assert RESTRICTED.decide(create({}, user=f"{uid}:{gid}"), PEER).verdict == "allow"


# -- security options --------------------------------------------------------------


@st.composite
def unconfined(draw: st.DrawFn) -> str:
    sep = draw(st.sampled_from(["=", ":"]))
    what = draw(st.sampled_from(["seccomp", "apparmor", "label", "writable-cgroups"]))
    if what == "label":
        value = draw(st.sampled_from(["disable", "user:root", "role:sysadm_r", "type:spc_t",
                                      "type:unconfined_t"]))
    elif what == "writable-cgroups":
        value = draw(st.sampled_from(["true", "1", "t", "T", "TRUE", "True"]))
    else:
        value = draw(mixed_case("unconfined"))
    return f"{what}{sep}{value}"


@relaxed
@given(PROFILES, unconfined(), st.randoms())
def test_unconfined_security_options_never_pass(policy: Any, bad: str, rnd: Any) -> None:
    """Property: an unconfining security option among confining ones is denied by every profile."""
    opts = ["no-new-privileges", "apparmor=docker-default", bad]
    rnd.shuffle(opts)
    d = policy.decide(create({"SecurityOpt": opts}), PEER)
    assert d.verdict == "deny", (opts, d)


@relaxed
@given(st.sampled_from(["no-new-privileges", "no-new-privileges=true", "no-new-privileges:true",
                        "no-new-privileges=1", "no-new-privileges:T", "no-new-privileges=True"]))
def test_no_new_privileges_spellings_satisfy_restricted(opt: str) -> None:
    """Each true spelling of no-new-privileges satisfies restricted's requirement."""
    d = RESTRICTED.decide(create({"SecurityOpt": [opt]}), PEER)
    assert d.verdict == "allow", (opt, d)


@relaxed
@given(st.sampled_from(["no-new-privileges=false", "no-new-privileges:0", "no-new-privileges=F"]))
def test_turning_no_new_privileges_off_is_denied(opt: str) -> None:
    """A later false no-new-privileges after a true one is denied by restricted."""
    d = RESTRICTED.decide(create({"SecurityOpt": ["no-new-privileges", opt]}), PEER)
    assert d.verdict == "deny", (opt, d)


# -- sysctls -----------------------------------------------------------------------


@relaxed
@given(PROFILES, st.sampled_from(["kernel.core_pattern", "kernel.modprobe", "net.ipv4.ip_forward",
                                  "vm.overcommit_memory"]), st.data())
def test_unsafe_sysctls_never_pass(policy: Any, name: str, data: st.DataObject) -> None:
    """Property: unsafe sysctls in dot or slash spelling are denied by every profile."""
    spelled = "".join(
        data.draw(st.sampled_from([".", "/"])) if c == "." else c for c in name)
    d = policy.decide(create({"Sysctls": {spelled: "1"}}), PEER)
    assert d.verdict == "deny", (spelled, d)


def test_benchmark_budget() -> None:
    """The hot path stays well inside the 0.2 ms budget (loose bound for slow CI machines)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks" / "bench_policy.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.per_decision_ms("baseline", n=2000) < 1.0
