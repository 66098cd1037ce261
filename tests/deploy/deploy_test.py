#!/usr/bin/env python3
"""deploy_test.py - checks of deploy/ (ctest label "deploy").

  deploy_test.py CHECK --source REPO --build BUILD_DIR

CHECK is one of:
  verify       `systemd-analyze verify` of greta@.service and greta.target, with
               each GPU drop-in, the backoff drop-in, and the sysusers entry
               through `systemd-sysusers --root`. Without systemd-analyze it is
               skipped (exit 77), unless GRETA_REQUIRE_SYSTEMD=1.
  policy       deploy/systemd/restart-policy.txt against the code (supervisor,
               greta up) and the deployment files.
  envfile      deploy/systemd/example.env through systemd's own parser (the
               environment.d generator), against the variables the unit uses.
  install      `cmake --install` puts the four binaries and the deploy files
               where the unit and the README say.
  lifecycle    the unit's ExecStart / ExecStopPost lines, expanded as systemd
               does, run against the installed binaries with this process as
               the subreaper (as the service manager is): start = ready, a
               unique main PID, stop by SIGTERM, supervisor crash -> stages
               kept and adopted, stop timeout and failed start -> cleaned up.
  entrypoint   deploy/container/entrypoint.sh: up, arguments passed on,
               supervisor crash -> adopted, `greta down` and SIGTERM -> exit 0,
               no model -> 2, a bad model -> 1.
  dockerfiles  deploy/container/Dockerfile.*: COPY sources exist, every -D
               option is a project cache variable or a documented CMake
               variable and lands in the cache of a configure run (where the
               toolchain is installed here), the runtime packages provide the
               libraries the binaries need, the install layout matches COPY.
Tests that start instances need stories260K.gguf (GRETA_TESTDATA, else
REPO/../shared/testdata): skipped without it, unless GRETA_REQUIRE_TESTDATA=1.
"""
import argparse
import ctypes
import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

SKIP = 77
UNIT = "greta@.service"
TARGET = "greta.target"
DROPINS = ("gpu-cuda.conf", "gpu-rocm.conf")
BACKOFF_DROPIN = "restart-backoff.conf"
MAX_EXPOSURE = 2.0  # `systemd-analyze security`: 1.2 without, 1.4 with a GPU drop-in (systemd 252)
PROGRAMS = ("greta", "greta-tokenizer", "greta-sampler", "greta-gpu-worker")

failures = []
quiet = [0]


def check(cond, what, detail=""):
    cond = bool(cond)
    if not quiet[0]:
        print(("ok   " if cond else "FAIL ") + what)
        if not cond and detail:
            print("     " + str(detail).replace("\n", "\n     "))
    if not cond:
        failures.append(what)
    return cond


def caught(what, fn, *args):
    """Runs checks that must fail (the test can fail): ok when one did."""
    n = len(failures)
    quiet[0] += 1
    try:
        fn(*args)
    except (ValueError, OSError) as e:
        failures.append(str(e))
    finally:
        quiet[0] -= 1
    got = failures[n:]
    del failures[n:]
    return check(bool(got), what + " is caught", "no check failed")


def skip(msg, require=None):
    if require and os.environ.get(require) == "1":
        print(f"FAIL: {msg} ({require}=1)")
        sys.exit(1)
    print(f"SKIPPED: {msg}")
    sys.exit(SKIP)


def finish():
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("all checks passed")
    sys.exit(0)


# ---- unit files ------------------------------------------------------------------


def parse_unit(path):
    """systemd unit/drop-in syntax -> [(section, key, value)] in file order."""
    out, section, pending = [], None, ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if pending:
                line = pending + line.lstrip()
                pending = ""
            if line.endswith("\\") and not line.lstrip().startswith(("#", ";")):
                pending = line[:-1] + " "
                continue
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1]
                continue
            if "=" not in s:
                raise ValueError(f"{path}: not KEY=VALUE: {s!r}")
            k, v = s.split("=", 1)
            out.append((section, k.strip(), v.strip()))
    return out


def unit_last(entries, key):
    vals = [v for _, k, v in entries if k == key]
    return vals[-1] if vals else None


def unit_list(entries, key):
    """A list setting: every assignment adds, an empty one resets."""
    vals = []
    for _, k, v in entries:
        if k == key:
            vals = [] if v == "" else vals + [v]
    return vals


def timespan_ms(text):
    """systemd time span ("100ms", "90s", "1min 30s", "5") -> ms."""
    units = {"us": 0.001, "usec": 0.001, "ms": 1, "msec": 1, "": 1000, "s": 1000, "sec": 1000,
             "second": 1000, "seconds": 1000, "m": 60000, "min": 60000, "minute": 60000,
             "minutes": 60000, "h": 3600000, "hr": 3600000, "hour": 3600000, "hours": 3600000}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text.strip())
    if not parts or re.sub(r"[\d.\sa-z]", "", text.strip()):
        raise ValueError(f"not a time span: {text!r}")
    total = 0.0
    for num, unit in parts:
        if unit not in units:
            raise ValueError(f"unknown time unit {unit!r} in {text!r}")
        total += float(num) * units[unit]
    return int(round(total))


def expand_specifiers(text, instance):
    def rep(m):
        c = m.group(1)
        if c == "%":
            return "%"
        if c == "i":
            return instance
        raise ValueError(f"specifier %{c} is not emulated by this test")
    return re.sub(r"%(.)", rep, text)


def expand_command(line, instance, env):
    """An Exec*= line as systemd runs it: specifiers, unquoting into words,
    then per word: "$NAME" alone -> the value split at whitespace, "${NAME}"
    -> the value, "$$" -> "$"."""
    if line[:1] in "-@+!:":
        raise ValueError(f"command prefixes are not emulated: {line!r}")
    words = shlex.split(expand_specifiers(line, instance), posix=True)
    argv = []
    for w in words:
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            argv.extend(env.get(m.group(1), "").split())
            continue
        w = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda mm: env.get(mm.group(1), ""), w)
        argv.append(w.replace("$$", "$"))
    return argv


# ---- environment files -------------------------------------------------------------


def env_generator():
    for d in ("/usr/lib/systemd/user-environment-generators", "/lib/systemd/user-environment-generators"):
        p = os.path.join(d, "30-systemd-environment-d-generator")
        if os.access(p, os.X_OK):
            return p
    return None


def parse_env_systemd(path):
    """KEY=VALUE pairs of an EnvironmentFile as systemd's own parser reads
    them (the environment.d generator uses the same one), or None when the
    generator is not installed."""
    gen = env_generator()
    if not gen:
        return None
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "environment.d"))
        conf = os.path.join(d, "environment.d", "50-greta-test.conf")
        shutil.copyfile(path, conf)
        env = {"PATH": "/usr/bin:/bin", "XDG_CONFIG_HOME": d, "SYSTEMD_LOG_LEVEL": "debug"}
        r = subprocess.run([gen], env=env, capture_output=True, text=True, timeout=30)
        pairs = {}
        for line in r.stderr.splitlines():
            m = re.match(re.escape(conf) + r":\d+: setting ([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
            if m:
                pairs[m.group(1)] = m.group(2)
        return pairs


def parse_env_strict(path):
    """The subset of the EnvironmentFile syntax the project uses: comments,
    blank lines, KEY=VALUE with VALUE plain or in one pair of quotes on the
    same line. Anything else raises ValueError naming the line."""
    pairs = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s or s[0] in "#;":
                continue
            m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", s)
            if not m:
                raise ValueError(f"{path}:{n}: not KEY=VALUE: {s!r}")
            v = m.group(2)
            if v[:1] in "\"'":
                if len(v) < 2 or v[-1] != v[0] or v[0] in v[1:-1] or "\\" in v:
                    raise ValueError(f"{path}:{n}: unbalanced or escaped quotes: {v!r}")
                v = v[1:-1]
            elif re.search(r"[\s\"'\\]", v):
                raise ValueError(f"{path}:{n}: unquoted value with spaces, quotes or backslashes: {v!r}")
            pairs[m.group(1)] = v
    return pairs


def parse_env_file(path):
    """(pairs, parser name): systemd's parse when available, which must equal
    the strict parse."""
    strict = parse_env_strict(path)
    sd = parse_env_systemd(path)
    if sd is None:
        return strict, "strict parser (systemd's environment.d generator not installed)"
    if sd != strict:
        raise ValueError(f"{path}: systemd reads {sd}, the strict parser {strict}")
    return sd, "systemd's parser (environment.d generator) = strict parser"


def check_env_file(path, unit_vars, label):
    """Returns the parsed pairs; records failures."""
    pairs, parser = parse_env_file(path)
    check(True, f"{label}: parses ({parser}): {sorted(pairs)}")
    check(set(unit_vars) <= set(pairs), f"{label}: defines every variable the unit uses {sorted(unit_vars)}",
          f"defined: {sorted(pairs)}")
    check(not any("$" in v for v in pairs.values()), f"{label}: no '$' in values (no expansion in EnvironmentFile)")
    model = pairs.get("GRETA_MODEL", "")
    check(model.startswith("/") and model.endswith(".gguf"), f"{label}: GRETA_MODEL is an absolute .gguf path",
          model)
    return pairs


def unit_env_vars(entries):
    used = set()
    for key in ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost"):
        for line in unit_list(entries, key):
            used |= set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", line))
            used |= {w[1:] for w in shlex.split(line) if re.fullmatch(r"\$[A-Za-z_][A-Za-z0-9_]*", w)}
    return used - {"SERVICE_RESULT", "EXIT_CODE", "EXIT_STATUS"}


# ---- processes ------------------------------------------------------------------------


class Reaper:
    """This process as the child subreaper (PR_SET_CHILD_SUBREAPER), like the
    service manager: orphans (the supervisor after `greta up` exits, stages of
    a dead supervisor) become our children and are reaped at once, so a dead
    process never lingers as a zombie that /proc still shows."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        self.status = {}
        self.cv = threading.Condition()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                time.sleep(0.01)
                continue
            with self.cv:
                self.status[pid] = st
                self.cv.notify_all()

    def wait(self, pid, timeout):
        """Exit status (os.waitstatus_to_exitcode form) or None on timeout."""
        end = time.time() + timeout
        with self.cv:
            while pid not in self.status:
                left = end - time.time()
                if left <= 0:
                    return None
                self.cv.wait(left)
            return os.waitstatus_to_exitcode(self.status.pop(pid))

    def spawn(self, argv, env, out_path, cwd=None, stdin="/dev/null"):
        acts = [(os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2)]
        if cwd:
            old = os.getcwd()
            os.chdir(cwd)
        try:
            return os.posix_spawn(argv[0], argv, env, file_actions=acts)
        finally:
            if cwd:
                os.chdir(old)

    def run(self, argv, env, tmp, timeout=60, cwd=None, stdin="/dev/null"):
        """(exit code, output) of a command; -999 when it timed out (killed)."""
        fd, out = tempfile.mkstemp(dir=tmp, prefix="out-")
        os.close(fd)
        pid = self.spawn(argv, env, out, cwd, stdin)
        rc = self.wait(pid, timeout)
        if rc is None:
            os.kill(pid, signal.SIGKILL)
            self.wait(pid, 10)
            rc = -999
        with open(out, encoding="utf-8", errors="replace") as f:
            text = f.read()
        os.unlink(out)
        return rc, text


def instance_procs(instance):
    """{pid: (program basename, argv, ppid)} of live processes of an instance."""
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            with open(f"/proc/{d}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat[0] == "Z" or "--instance" not in argv:
            continue
        i = argv.index("--instance")
        if i + 1 < len(argv) and argv[i + 1] == instance and os.path.basename(argv[0]) in PROGRAMS:
            procs[int(d)] = (os.path.basename(argv[0]), argv, int(stat[1]))
    return procs


def supervisor_and_stages(instance):
    sup, stages = None, {}
    for pid, (prog, argv, _) in instance_procs(instance).items():
        if prog == "greta" and len(argv) > 1 and argv[1] == "up":
            sup = pid
        elif prog != "greta":
            stages[prog] = pid
    return sup, stages


def wait_until(pred, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_instance(instance, segment):
    for pid in instance_procs(instance):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    if os.path.exists(segment):
        os.unlink(segment)


def testdata_model(source):
    d = os.environ.get("GRETA_TESTDATA") or os.path.join(source, "..", "shared", "testdata")
    p = os.path.abspath(os.path.join(d, "stories260K.gguf"))
    if not os.access(p, os.R_OK):
        skip(f"test data '{p}' not found; run deploy/fetch-testdata.sh or set GRETA_TESTDATA",
             "GRETA_REQUIRE_TESTDATA")
    return p


def cmake_install(build, prefix, tmp):
    r = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True,
                       timeout=120)
    if not check(r.returncode == 0, f"cmake --install {build} --prefix {prefix}", r.stdout + r.stderr):
        finish()


def base_env():
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "LD_LIBRARY_PATH"):
        if k in os.environ:
            env[k] = os.environ[k]
    return env


# ---- checks -----------------------------------------------------------------------------


def cmd_verify(a):
    sa = shutil.which("systemd-analyze")
    if not sa:
        skip("systemd-analyze is not installed (systemd)", "GRETA_REQUIRE_SYSTEMD")
    version = subprocess.run([sa, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"using {sa}: {version}")
    m = re.search(r"systemd (\d+)", version)
    sd_version = int(m.group(1)) if m else 0
    sysd = os.path.join(a.source, "deploy", "systemd")
    with tempfile.TemporaryDirectory(prefix="gd") as tmp:
        prefix = os.path.join(tmp, "prefix")
        os.makedirs(os.path.join(prefix, "bin"))
        for p in PROGRAMS:
            os.symlink(os.path.join(a.bin, p), os.path.join(prefix, "bin", p))

        def stage_units(dropins):
            d = tempfile.mkdtemp(dir=tmp, prefix="units")
            for name in (UNIT, TARGET):
                with open(os.path.join(sysd, name), encoding="utf-8") as f:
                    text = f.read()
                with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                    f.write(text.replace("/usr/local/bin/", prefix + "/bin/"))
            if dropins:
                os.makedirs(os.path.join(d, UNIT + ".d"))
                for name in dropins:
                    shutil.copyfile(os.path.join(sysd, name), os.path.join(d, UNIT + ".d", name))
            return d

        def verify(d, allowed=()):
            env = dict(os.environ, SYSTEMD_UNIT_PATH=d + ":", SYSTEMD_LOG_COLOR="0")
            r = subprocess.run([sa, "verify", "--man=no", "greta@deploytest.service", TARGET],
                               capture_output=True, text=True, env=env, timeout=60)
            lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
            bad = [ln for ln in lines if not any(re.search(p, ln) for p in allowed)]
            return r.returncode, lines, bad

        for dropins in ((),) + tuple((x,) for x in DROPINS):
            d = stage_units(dropins)
            rc, lines, bad = verify(d)
            name = f"{UNIT} + {TARGET}" + (f" + {dropins[0]}" if dropins else "")
            check(rc == 0 and not bad, f"systemd-analyze verify: {name} (no warnings)", "\n".join(lines))
            # hardening: systemd's exposure rating (0 = best, 10 = none)
            r = subprocess.run([sa, "security", "--offline=yes", "--man=no", "--no-pager",
                                os.path.join(d, UNIT)], capture_output=True, text=True, timeout=60,
                               env=dict(os.environ, SYSTEMD_COLORS="0"))
            m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout + r.stderr)
            name = UNIT + (f" + {dropins[0]}" if dropins else "")
            check(m and float(m.group(1)) <= MAX_EXPOSURE,
                  f"systemd-analyze security: {name} exposure {m.group(1) if m else '?'} <= {MAX_EXPOSURE}",
                  (r.stdout + r.stderr)[-2000:])
        # restart-backoff.conf: keys of systemd >= 254
        rc, lines, bad = verify(stage_units((BACKOFF_DROPIN,)),
                                () if sd_version >= 254 else (r"Unknown key( name)? '(RestartSteps|RestartMaxDelaySec)'",))
        check(rc == 0 and not bad, f"systemd-analyze verify: {BACKOFF_DROPIN} "
              + ("(no warnings)" if sd_version >= 254 else f"(only its two keys unknown to systemd {sd_version})"),
              "\n".join(lines))
        # the checks can fail: a unit with a missing binary and a bad key
        d = stage_units(())
        with open(os.path.join(d, UNIT), encoding="utf-8") as f:
            text = f.read()
        with open(os.path.join(d, UNIT), "w", encoding="utf-8") as f:
            f.write(text.replace(prefix + "/bin/greta up", "/nonexistent/greta up").replace(
                "[Service]", "[Service]\nRestartSecs=1"))
        rc, lines, bad = verify(d)
        check(bad and any("nonexistent" in ln for ln in bad) and any("RestartSecs" in ln for ln in bad),
              "systemd-analyze verify flags a missing ExecStart binary and an unknown key", "\n".join(lines))

        # the sysusers entry creates user greta (home /var/lib/greta = StateDirectory)
        su = shutil.which("systemd-sysusers")
        if not su:
            skip("systemd-sysusers is not installed (systemd)", "GRETA_REQUIRE_SYSTEMD")
        root = os.path.join(tmp, "root")
        os.makedirs(os.path.join(root, "etc"))
        r = subprocess.run([su, "--root", root, os.path.join(sysd, "greta.sysusers")], capture_output=True,
                           text=True, timeout=60)
        with open(os.path.join(root, "etc", "passwd"), encoding="utf-8") as f:
            users = {ln.split(":")[0]: ln.strip().split(":") for ln in f if ln.strip()}
        unit = parse_unit(os.path.join(sysd, UNIT))
        user = unit_last(unit, "User")
        check(r.returncode == 0 and user in users, f"systemd-sysusers creates User={user}", r.stdout + r.stderr)
        if user in users:
            check(users[user][5] == "/var/lib/" + unit_last(unit, "StateDirectory"),
                  f"user {user}'s home is the unit's StateDirectory", users[user])
    finish()


def read_policy(source):
    values, checks = {}, []
    path = os.path.join(source, "deploy", "systemd", "restart-policy.txt")
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            w = s.split(None, 4)
            if w[0] == "value" and len(w) == 5:
                values[w[1]] = (w[2], w[3], w[4])
            elif w[0] == "check" and len(w) == 5:
                checks.append((w[1], w[2], w[3], w[4]))
            else:
                raise ValueError(f"{path}:{n}: not a value or check row: {s!r}")
    return values, checks


def setting(path, key):
    """KEY's value in a unit file (the last assignment) or a shell script (KEY=)."""
    if path.endswith((".service", ".conf", ".target")):
        return unit_last(parse_unit(path), key)
    with open(path, encoding="utf-8") as f:
        vals = re.findall(rf"^\s*{re.escape(key)}=(\S+)\s*$", f.read(), re.M)
    return vals[-1] if vals else None


def policy_ms(name, values):
    v = int(values[name][0])
    return v * 1000 if name.endswith("_s") else v


def policy_values(values, source):
    for name, (val, rel, pattern) in values.items():
        with open(os.path.join(source, rel), encoding="utf-8") as f:
            text = f.read()
        # VALUE as a whole number: "UP_WAIT_MS 60000" does not match "UP_WAIT_MS 600000"
        found = re.search(re.escape(pattern).replace("VALUE", re.escape(val) + r"(?![\d.])"), text)
        check(found, f"policy {name} = {val}: '{pattern}' in {rel}")


def policy_checks(values, checks, deploy):
    for rel, key, op, operand in checks:
        got = setting(os.path.join(deploy, rel), key)
        what = f"{rel}: {key} {op} {operand}"
        if got is None:
            check(False, what, f"{key} is not set in {rel}")
            continue
        try:
            if operand in values:  # a time: unit files in time spans, scripts in ms
                want = policy_ms(operand, values)
                have = int(got) if rel.endswith(".sh") else timespan_ms(got)
            elif operand.isdigit():
                want, have = int(operand), int(got)
            else:
                want, have = operand, got
        except ValueError as e:
            check(False, what, e)
            continue
        ok = have == want if op == "=" else (have > want if op == ">" else None)
        check(ok is True, what + f" (is {got})")
    # RestartSteps: the supervisor doubles from backoff_min to backoff_max
    steps = int(setting(os.path.join(deploy, "systemd", BACKOFF_DROPIN), "RestartSteps") or 0)
    lo, hi = policy_ms("backoff_min_ms", values), policy_ms("backoff_max_ms", values)
    check(lo * 2 ** (steps - 1) < hi <= lo * 2 ** steps, f"RestartSteps={steps} doublings take "
          f"{lo} ms to {hi} ms")


def cmd_policy(a):
    values, checks = read_policy(a.source)
    policy_values(values, a.source)
    deploy = os.path.join(a.source, "deploy")
    policy_checks(values, checks, deploy)
    # the checks can fail: the supervisor's backoff changed, a unit out of step
    changed = dict(values, backoff_min_ms=("250",) + values["backoff_min_ms"][1:])
    caught("a table value the code does not have", policy_values, changed, a.source)
    caught("a table value the unit does not have", policy_checks, changed, checks, deploy)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(deploy, os.path.join(tmp, "deploy"), ignore=shutil.ignore_patterns("*.sh", "*.md"))
        shutil.copy(os.path.join(deploy, "container", "entrypoint.sh"), os.path.join(tmp, "deploy", "container"))
        unit = os.path.join(tmp, "deploy", "systemd", UNIT)
        with open(unit, encoding="utf-8") as f:
            text = f.read()
        with open(unit, "w", encoding="utf-8") as f:
            f.write(text.replace("\nTimeoutStopSec=", "\nTimeoutStopSec=1s\n#"))
        caught("a unit with TimeoutStopSec below the shutdown time", policy_checks, values, checks,
               os.path.join(tmp, "deploy"))
    finish()


def cmd_envfile(a):
    sysd = os.path.join(a.source, "deploy", "systemd")
    unit = parse_unit(os.path.join(sysd, UNIT))
    used = unit_env_vars(unit)
    check(unit_last(unit, "EnvironmentFile") == "/etc/greta/%i.env", "the unit reads /etc/greta/%i.env")
    try:
        pairs = check_env_file(os.path.join(sysd, "example.env"), used, "example.env")
    except ValueError as e:
        check(False, "example.env parses", e)
        finish()
    args = shlex.split(pairs.get("GRETA_UP_ARGS", ""))
    check("--backend" in args, "GRETA_UP_ARGS of the example names the backend", args)
    # the checks can fail
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("an unterminated quote", 'GRETA_MODEL=/m.gguf\nGRETA_UP_ARGS="--slots 4\nX=1\n'),
                           ("a line that is no assignment", "GRETA_MODEL=/m.gguf\nGRETA_UP_ARGS=\nBAD LINE\n"),
                           ("an unquoted value with spaces", "GRETA_MODEL=/m.gguf\nGRETA_UP_ARGS=--slots 4\n"),
                           ("a variable of the unit missing", "GRETA_MODEL=/m.gguf\n"),
                           ("a relative model path", "GRETA_MODEL=m.gguf\nGRETA_UP_ARGS=\n")):
            bad = os.path.join(tmp, "bad.env")
            with open(bad, "w", encoding="utf-8") as f:
                f.write(text)
            caught(f"an environment file with {name}", check_env_file, bad, used, "bad.env")
    finish()


def cmd_install(a):
    with tempfile.TemporaryDirectory(prefix="gd") as tmp:
        prefix = os.path.join(tmp, "usr", "local")
        cmake_install(a.build, prefix, tmp)
        for p in PROGRAMS:
            path = os.path.join(prefix, "bin", p)
            check(os.access(path, os.X_OK), f"installed {path[len(tmp):]}")
        unit = parse_unit(os.path.join(a.source, "deploy", "systemd", UNIT))
        exe = shlex.split(unit_last(unit, "ExecStart"))[0]
        check(os.access(tmp + exe, os.X_OK), f"ExecStart's {exe} is what the install puts there")
        doc = os.path.join(prefix, "share", "doc", "greta", "deploy")
        check(os.path.isfile(os.path.join(doc, "README.md")), "installed share/doc/greta/deploy/README.md")
        for f in sorted(os.listdir(os.path.join(a.source, "deploy", "systemd"))):
            check(os.path.isfile(os.path.join(doc, "systemd", f)), f"installed share/doc/greta/deploy/systemd/{f}")
        check(os.access(os.path.join(doc, "container", "entrypoint.sh"), os.X_OK),
              "installed share/doc/greta/deploy/container/entrypoint.sh (executable)")
        for line in unit_list(unit, "Documentation"):
            if line.startswith("file://"):
                check(os.path.isfile(tmp + line[7:]), f"Documentation= {line} is installed")
        # `greta up` finds the stage binaries next to itself after installation
        r = subprocess.run([os.path.join(prefix, "bin", "greta"), "up", "--help"], capture_output=True, text=True)
        check(r.returncode == 0 and "greta up" in r.stdout, "the installed greta runs")
    finish()


class UnitRunner:
    """Runs the unit's commands the way systemd would, under a fake root."""

    def __init__(self, a, reaper, tmp, instance):
        self.reaper, self.tmp, self.instance = reaper, tmp, instance
        sysd = os.path.join(a.source, "deploy", "systemd")
        self.unit = parse_unit(os.path.join(sysd, UNIT))
        self.prefix = os.path.join(tmp, "usr", "local")
        self.root = tmp
        cmake_install(a.build, self.prefix, tmp)
        env = base_env()
        for e in unit_list(self.unit, "Environment"):
            for kv in shlex.split(e):
                k, v = kv.split("=", 1)
                env[k] = self.map(v)
        pairs, _ = parse_env_file(os.path.join(sysd, "example.env"))
        pairs["GRETA_MODEL"] = testdata_model(a.source)
        env.update(pairs)
        self.env = env
        # RuntimeDirectory= and StateDirectory= as systemd makes them
        rt = unit_last(self.unit, "RuntimeDirectory")
        mode = int(unit_last(self.unit, "RuntimeDirectoryMode"), 8)
        check(env.get("XDG_RUNTIME_DIR", "") + "/greta" == self.map("/run/" + rt),
              "XDG_RUNTIME_DIR/greta of the unit is its RuntimeDirectory", env.get("XDG_RUNTIME_DIR"))
        os.makedirs(self.map("/run/" + rt), mode=mode)
        os.chmod(self.map("/run/" + rt), mode)
        self.rundir = os.path.join(self.map("/run/" + rt), instance)
        st = self.map("/var/lib/" + unit_last(self.unit, "StateDirectory"))
        os.makedirs(st, mode=int(unit_last(self.unit, "StateDirectoryMode"), 8))
        check(self.map(unit_last(self.unit, "WorkingDirectory")) == st, "WorkingDirectory is the StateDirectory")
        self.cwd = st
        self.segment = f"/dev/shm/greta-{os.getuid()}-{instance}"

    def map(self, path):
        for a, b in (("/usr/local/bin/", self.prefix + "/bin/"), ("/run", self.root + "/run"),
                     ("/var/lib/", self.root + "/var/lib/")):
            if path.startswith(a):
                return b + path[len(a):]
        return path

    def command(self, key):
        lines = unit_list(self.unit, key)
        assert len(lines) == 1, f"{key}: expected one line, got {lines}"
        line = lines[0].replace("/usr/local/bin/", self.prefix + "/bin/")
        return expand_command(line, self.instance, self.env)

    def run(self, key, timeout, extra_env=None):
        env = dict(self.env, **(extra_env or {}))
        return self.reaper.run(self.command(key), env, self.tmp, timeout, self.cwd)

    def start(self):
        timeout = timespan_ms(unit_last(self.unit, "TimeoutStartSec")) / 1000
        rc, out = self.run("ExecStart", timeout)
        ok = check(rc == 0, "ExecStart exits 0 (Type=forking: the unit is started)", out)
        sup, stages = supervisor_and_stages(self.instance)
        ok &= check(sup is not None and len(stages) == 3, "the supervisor and three stages run",
                    instance_procs(self.instance))
        return ok, sup, stages

    def chat(self, prompt):
        """A request through the instance: `greta chat` (greedy, 16 tokens), as
        a client running as the unit's user would send it."""
        path = os.path.join(self.tmp, "prompt.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(prompt + "\n")
        argv = [self.prefix + "/bin/greta", "chat", "--instance", self.instance, "-n", "16", "--temp", "0"]
        return self.reaper.run(argv, self.env, self.tmp, 120, self.cwd, path)

    def stop_post(self, result, code, status):
        return self.run("ExecStopPost", 30, {"SERVICE_RESULT": result, "EXIT_CODE": code, "EXIT_STATUS": status})

    def gone(self):
        return not instance_procs(self.instance) and not os.path.exists(self.segment)


def cmd_lifecycle(a):
    testdata_model(a.source)
    reaper = Reaper()
    instance = f"dl{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="gd") as tmp:
        u = UnitRunner(a, reaper, tmp, instance)
        try:
            lifecycle(u, reaper)
        finally:
            kill_instance(instance, u.segment)
    finish()


def lifecycle(u, reaper):
    check(unit_last(u.unit, "Type") == "forking" and unit_last(u.unit, "KillMode") == "process",
          "Type=forking, KillMode=process")
    argv = u.command("ExecStart")
    print("ExecStart: " + shlex.join(argv))
    # 1. start: ready, one main PID candidate
    ok, sup, stages = u.start()
    if not ok:
        return
    mine = [pid for pid, (_, _, ppid) in instance_procs(u.instance).items() if ppid == os.getpid()]
    check(mine == [sup], "exactly one process of the unit is the manager's child: the supervisor (GuessMainPID)",
          instance_procs(u.instance))
    check(all(instance_procs(u.instance)[p][2] == sup for p in stages.values()),
          "the stages are the supervisor's children")
    check(os.path.isdir(u.rundir) and os.stat(u.rundir).st_mode & 0o777 == 0o700,
          f"runtime directory {u.rundir[len(u.root):]} (mode 0700)")
    check(os.path.exists(u.segment), f"segment {u.segment}")
    rc, reply = u.chat("Once upon a time")
    check(rc == 0 and len(reply.split()) >= 5, "a request is served (greta chat --instance)", f"{rc} {reply}")
    # 2. systemctl stop: SIGTERM to the main PID; it exits 0, the rest is gone
    os.kill(sup, signal.SIGTERM)
    rc = reaper.wait(sup, timespan_ms(unit_last(u.unit, "TimeoutStopSec")) / 1000)
    check(rc == 0, "stop: the supervisor exits 0 on SIGTERM (SERVICE_RESULT=success)", rc)
    check(wait_until(u.gone, 5), "stop: stages, segment gone", instance_procs(u.instance))
    rc, out = u.stop_post("success", "exited", "0")
    check(rc == 0, "stop: ExecStopPost after a clean stop exits 0", out)
    # 3. supervisor crash: the stages stay, ExecStopPost leaves them, the
    #    restart adopts them
    ok, sup, stages = u.start()
    if not ok:
        return
    os.kill(sup, signal.SIGKILL)
    reaper.wait(sup, 10)
    check(all(alive(p) for p in stages.values()), "crash: the stages outlive the supervisor (KillMode=process)")
    rc, out = u.stop_post("signal", "killed", "KILL")
    check(rc == 0 and all(alive(p) for p in stages.values()),
          "crash: ExecStopPost (SERVICE_RESULT=signal) leaves the stages for adoption", out)
    time.sleep(timespan_ms(unit_last(u.unit, "RestartSec")) / 1000)
    ok, sup2, stages2 = u.start()
    check(ok and sup2 != sup and stages2 == stages, "crash: the restarted unit adopts the same stages",
          f"before {stages}, after {stages2}")
    with open(os.path.join(u.rundir, "supervisor.log"), encoding="utf-8", errors="replace") as f:
        log = f.read()
    check(all(f"adopt stage={s}" in log for s in ("tokenizer", "sampler", "gpu-worker")),
          "crash: supervisor.log records the adoptions")
    rc, reply2 = u.chat("Once upon a time")
    check(rc == 0 and reply2 == reply, "crash: the adopted stages serve the same greedy reply", f"{rc} {reply2}")
    # 4. stop that timed out: SIGTERM ignored (stopped process), SIGKILL to the
    #    main PID only; ExecStopPost (SERVICE_RESULT=timeout) takes it down
    os.kill(sup2, signal.SIGSTOP)
    os.kill(sup2, signal.SIGTERM)
    os.kill(sup2, signal.SIGKILL)
    reaper.wait(sup2, 10)
    check(all(alive(p) for p in stages.values()), "timeout: stages left after SIGKILL of the main PID")
    rc, out = u.stop_post("timeout", "killed", "KILL")
    check(rc == 0 and wait_until(u.gone, 5), "timeout: ExecStopPost takes the instance down", out)
    # 5. a failed start (the supervisor runs on): ExecStopPost takes it down
    ok, sup, stages = u.start()
    if not ok:
        return
    rc, out = u.stop_post("exit-code", "exited", "1")
    check(rc == 0 and wait_until(u.gone, 5), "failed start: ExecStopPost takes the instance down", out)
    check(reaper.wait(sup, 5) is not None, "failed start: the supervisor exited")


def cmd_entrypoint(a):
    model = testdata_model(a.source)
    reaper = Reaper()
    instance = f"de{os.getpid()}"
    script = os.path.join(a.source, "deploy", "container", "entrypoint.sh")
    segment = f"/dev/shm/greta-{os.getuid()}-{instance}"
    sc = shutil.which("shellcheck")
    if sc:
        r = subprocess.run([sc, "-s", "sh", script], capture_output=True, text=True)
        check(r.returncode == 0, "entrypoint: shellcheck -s sh finds nothing", r.stdout)
    else:
        print("note: shellcheck not installed: entrypoint.sh not linted")
    with tempfile.TemporaryDirectory(prefix="gd") as tmp:
        prefix = os.path.join(tmp, "usr", "local")
        cmake_install(a.build, prefix, tmp)
        trace = os.path.join(tmp, "trace")
        env = base_env()
        os.mkdir(os.path.join(tmp, "run"))  # the image's /run
        env.update({"PATH": prefix + "/bin:/usr/bin:/bin", "XDG_RUNTIME_DIR": os.path.join(tmp, "run"),
                    "GRETA_MODEL": model, "GRETA_INSTANCE": instance, "GRETA_UP_ARGS": "--slots 2 --ctx 256"})
        out = os.path.join(tmp, "entrypoint.out")
        try:
            entrypoint(reaper, script, env, out, tmp, instance, segment, trace)
        finally:
            kill_instance(instance, segment)
    finish()


def entrypoint(reaper, script, env, out, tmp, instance, segment, trace):
    def output(path=out):
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()

    greta = shutil.which("greta", path=env["PATH"])

    def status_up():
        return reaper.run([greta, "status", "--instance", instance], env, tmp, 30)[0] == 0

    # up, with GRETA_UP_ARGS and the container's arguments passed on
    def started(path, pid):
        """The entrypoint's `greta up` returned (it follows the logs now), or it exited."""
        return wait_until(lambda: "supervisor up" in output(path) or pid in reaper.status, 60, 0.1)

    pid = reaper.spawn(["/bin/sh", script, "--trace", trace], env, out)
    up = started(out, pid) and status_up()
    sup, stages = supervisor_and_stages(instance)
    if not check(up and sup and len(stages) == 3, "entrypoint: the instance comes up; it follows the logs",
                 output()):
        return
    argv = instance_procs(instance).get(sup, (None, []))[1]
    check(argv[-6:] == ["--slots", "2", "--ctx", "256", "--trace", trace],
          "entrypoint: GRETA_UP_ARGS and its arguments reach greta up", argv)
    rundir = os.path.join(env["XDG_RUNTIME_DIR"], "greta", instance)
    check(os.path.isfile(os.path.join(rundir, "supervisor.log")), "entrypoint: runtime dir under XDG_RUNTIME_DIR")
    # the supervisor dies: greta up again, the stages are adopted
    os.kill(sup, signal.SIGKILL)

    def readopted():
        s, st = supervisor_and_stages(instance)
        return s and s != sup and st == stages and status_up()
    check(wait_until(readopted, 20, 0.1), "entrypoint: a dead supervisor is replaced, the stages adopted",
          f"{stages} -> {supervisor_and_stages(instance)}\n{output()}")
    check("died; greta up again in 100 ms" in output(), "entrypoint: says so")
    # docker stop: SIGTERM -> the instance goes down, exit 0
    os.kill(pid, signal.SIGTERM)
    rc = reaper.wait(pid, 20)
    check(rc == 0, "entrypoint: SIGTERM -> exit 0", f"{rc}\n{output()}")
    check(wait_until(lambda: not instance_procs(instance) and not os.path.exists(segment), 5),
          "entrypoint: SIGTERM takes the instance down", instance_procs(instance))
    # `greta down` from outside: the entrypoint ends with 0
    out2 = out + ".2"
    pid = reaper.spawn(["/bin/sh", script], env, out2)
    # up and following the logs: its `greta up` returned
    if not check(started(out2, pid) and status_up(), "entrypoint: up again", output(out2)):
        return
    rc, text = reaper.run([greta, "down", "--instance", instance], env, tmp, 30)
    rc = reaper.wait(pid, 20)
    check(rc == 0 and "was taken down" in output(out2), "entrypoint: `greta down` -> exit 0",
          f"{rc}\n{output(out2)}")
    # no model: 2; a model that is not there: 1
    env2 = dict(env)
    del env2["GRETA_MODEL"]
    rc, text = reaper.run(["/bin/sh", script], env2, tmp, 30)
    check(rc == 2 and "GRETA_MODEL" in text, "entrypoint: no GRETA_MODEL -> exit 2 with a message", f"{rc} {text}")
    env2["GRETA_MODEL"] = os.path.join(tmp, "missing.gguf")
    rc, text = reaper.run(["/bin/sh", script], env2, tmp, 60)
    check(rc == 1 and "missing.gguf" in text, "entrypoint: a missing model -> exit 1", f"{rc} {text}")
    check(not instance_procs(instance) and not os.path.exists(segment), "entrypoint: nothing left behind")


# ---- Dockerfiles ----------------------------------------------------------------------------


def parse_dockerfile(path):
    """[(instruction, args, ARG values in scope, stage index)]: continuation
    lines joined, comments dropped; global ARG defaults apply to FROM, a
    stage's ARGs (own default, else the global one) to its instructions."""
    lines, cur = [], ""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            s = raw.rstrip("\n")
            if not s.strip() or s.lstrip().startswith("#"):
                continue
            if s.endswith("\\"):
                cur += s[:-1] + " "
                continue
            lines.append(cur + s)
            cur = ""
    out, global_args, stage_args, stage = [], {}, None, -1
    for line in lines:
        ins, _, rest = line.strip().partition(" ")
        ins, rest = ins.upper(), rest.strip()
        if ins == "FROM":
            stage += 1
            out.append((ins, rest, dict(global_args), stage))
            stage_args = {}
            continue
        if ins == "ARG":
            k, eq, v = rest.partition("=")
            if stage_args is None:
                global_args[k] = v
            else:
                stage_args[k] = v if eq else global_args.get(k, "")
        out.append((ins, rest, dict(global_args if stage_args is None else stage_args), stage))
    return out


def subst(text, args):
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                  lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def project_cache_vars(source):
    """Cache variables the project declares: option(NAME ...), set(NAME ... CACHE ...)."""
    names = {}
    files = glob.glob(os.path.join(source, "**", "CMakeLists.txt"), recursive=True)
    files += glob.glob(os.path.join(source, "**", "*.cmake"), recursive=True)
    for p in files:
        if "/build" in p[len(source):]:
            continue
        with open(p, encoding="utf-8", errors="replace") as f:
            text = f.read()
        for m in re.finditer(r"\boption\(\s*([A-Z0-9_]+)", text):
            names[m.group(1)] = "BOOL"
        for m in re.finditer(r"\bset\(\s*([A-Z0-9_]+)\s+[^)]*?\bCACHE\s+(\w+)", text, re.S):
            names[m.group(1)] = m.group(2)
    strings = {}
    for m in re.finditer(r"set_property\(CACHE\s+([A-Z0-9_]+)\s+PROPERTY\s+STRINGS\s+([^)]*)\)",
                         open(os.path.join(source, "CMakeLists.txt"), encoding="utf-8").read()):
        strings[m.group(1)] = m.group(2).split()
    return names, strings


def cmake_documented(name):
    """cmake --help-variable knows NAME, or its CMAKE_<LANG>_... form."""
    for n in (name, re.sub(r"^CMAKE_(C|CXX|CUDA|HIP)_", "CMAKE_<LANG>_", name)):
        if subprocess.run(["cmake", "--help-variable", n], capture_output=True).returncode == 0:
            return True
    return False


def local_toolchain(defs):
    """Dockerfile paths -> this machine's equivalents, or (None, why)."""
    local = dict(defs)
    gpu = defs.get("GRETA_GPU", "none")
    if gpu == "cuda":
        nvcc = os.environ.get("CUDACXX") or "/usr/local/cuda/bin/nvcc"
        if not os.access(nvcc, os.X_OK):
            return None, f"nvcc not installed ({nvcc})"
        local["CMAKE_CUDA_COMPILER"] = nvcc
    elif gpu == "hip":
        cxx = shutil.which("clang++-19")
        hip = glob.glob("/usr/lib/*/libamdhip64.so") + glob.glob("/opt/rocm/lib/libamdhip64.so")
        if os.access(defs.get("CMAKE_CXX_COMPILER", ""), os.X_OK) and os.path.isdir(defs.get("GRETA_ROCM_PATH", "")):
            return local, ""
        if not cxx or not hip:
            return None, "clang++-19 or libamdhip64 not installed (deploy/install-deps.sh --hip)"
        local["CMAKE_CXX_COMPILER"] = cxx
        local["GRETA_ROCM_PATH"] = os.path.dirname(os.path.dirname(hip[0])) if "/opt/rocm" in hip[0] else "/usr"
    return local, ""


def needed_packages(binary):
    """Debian packages of the libraries binary needs directly (NEEDED)."""
    r = subprocess.run(["objdump", "-p", binary], capture_output=True, text=True)
    needed = re.findall(r"NEEDED\s+(\S+)", r.stdout)
    paths = {}
    for line in subprocess.run(["ldd", binary], capture_output=True, text=True).stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            paths[m.group(1)] = m.group(2)
    pkgs = {}
    for lib in needed:
        if re.match(r"lib(asan|ubsan|c|m|pthread|dl|rt|gcc_s|stdc\+\+)\.so", lib) or lib.startswith("ld-linux"):
            continue
        if lib not in paths:
            pkgs[lib] = None
            continue
        q = subprocess.run(["dpkg", "-S", os.path.realpath(paths[lib])], capture_output=True, text=True)
        if q.returncode != 0:
            q = subprocess.run(["dpkg", "-S", paths[lib]], capture_output=True, text=True)
        pkgs[lib] = q.stdout.split(":")[0] if q.returncode == 0 else None
    return pkgs


def build_packages(source):
    """Debian packages that provide what the project's CMake files look for:
    pkg_check_modules() modules (their .pc file) and find_program() tools."""
    pkgs = {}
    for p in glob.glob(os.path.join(source, "*", "CMakeLists.txt")):
        if os.path.basename(os.path.dirname(p)).startswith(("build", "tests")):
            continue
        with open(p, encoding="utf-8") as f:
            text = f.read()
        for m in re.finditer(r"pkg_check_modules\(\s*\w+[^)]*?IMPORTED_TARGET\s+([\w.+-]+)", text):
            mod = m.group(1)
            d = subprocess.run(["pkg-config", "--variable=pcfiledir", mod], capture_output=True, text=True)
            pc = os.path.join(d.stdout.strip(), mod + ".pc") if d.returncode == 0 else None
            pkgs[f"pkg-config {mod}"] = dpkg_owner(pc) if pc else None
        for m in re.finditer(r"find_program\(\s*\w+\s+([\w.+-]+)", text):
            exe = shutil.which(m.group(1))
            pkgs[f"program {m.group(1)}"] = dpkg_owner(exe) if exe else None
    return pkgs


def dpkg_owner(path):
    for p in (path, os.path.realpath(path)):
        q = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if q.returncode == 0:
            return q.stdout.split(":")[0]
    return None


def cmd_dockerfiles(a):
    cdir = os.path.join(a.source, "deploy", "container")
    files = sorted(glob.glob(os.path.join(cdir, "Dockerfile.*")))
    check(sorted(os.path.basename(f) for f in files) == ["Dockerfile.cuda", "Dockerfile.rocm"],
          "deploy/container has Dockerfile.cuda and Dockerfile.rocm", files)
    declared, strings = project_cache_vars(a.source)
    want_gpu = {"Dockerfile.cuda": "cuda", "Dockerfile.rocm": "hip"}
    have_dpkg = shutil.which("dpkg") and shutil.which("objdump")
    with tempfile.TemporaryDirectory(prefix="gd") as tmp:
        stage = os.path.join(tmp, "out")
        r = subprocess.run(["cmake", "--install", a.build, "--prefix", "/usr/local"], capture_output=True, text=True,
                           env=dict(os.environ, DESTDIR=stage))
        check(r.returncode == 0, "DESTDIR=/out cmake --install --prefix /usr/local (the Dockerfiles' install step)",
              r.stdout + r.stderr)
        pkgs, build_pkgs = {}, {}
        if have_dpkg:
            for p in PROGRAMS:
                pkgs.update(needed_packages(os.path.join(stage, "usr/local/bin", p)))
            build_pkgs = build_packages(a.source)
        for path in files:
            name = os.path.basename(path)
            ins = parse_dockerfile(path)
            froms = [subst(rest, args) for i, rest, args, st in ins if i == "FROM"]
            check(len(froms) == 2, f"{name}: a build and a runtime stage", froms)
            base = {"Dockerfile.cuda": r"^nvidia/cuda:13\.0\.\d+-devel-ubuntu24\.04 AS build$",
                    "Dockerfile.rocm": r"^rocm/dev-ubuntu-24\.04:\S+ AS build$"}[name]
            check(froms and re.match(base, froms[0]), f"{name}: built on {froms[0] if froms else '?'}")
            for i, rest, args, st in ins:
                if i == "COPY" and "--from=" not in rest:
                    srcs = shlex.split(rest)[:-1]
                    for s in srcs:
                        check(os.path.exists(os.path.join(a.source, s)), f"{name}: COPY source {s} exists")
                if i == "COPY" and "--from=build" in rest:
                    src = shlex.split(rest)[1]
                    check(os.path.isfile(os.path.join(tmp, src.lstrip("/"), "bin", "greta")) and
                          all(os.path.isfile(os.path.join(tmp, src.lstrip("/"), "bin", p)) for p in PROGRAMS),
                          f"{name}: COPY --from=build {src} holds the four binaries after the install step")
                if i == "ENTRYPOINT":
                    ep = re.findall(r'"([^"]+)"', rest)[0]
                    copied = [shlex.split(r2)[-1] for i2, r2, _, st2 in ins if i2 == "COPY" and st2 == st]
                    check(ep in copied, f"{name}: ENTRYPOINT {ep} is copied into the image")
            runs = [subst(rest, args) for i, rest, args, st in ins if i == "RUN" and "cmake -S" in rest and st == 0]
            check(len(runs) == 1, f"{name}: one cmake configure")
            defs = {}
            for t in shlex.split(runs[0]) if runs else []:
                if t.startswith("-D"):
                    k, _, v = t[2:].partition("=")
                    defs[k] = v
            for k, v in defs.items():
                if k in declared:
                    ok = v in strings[k] if k in strings else (v in ("ON", "OFF") if declared[k] == "BOOL" else True)
                    check(ok, f"{name}: -D{k}={v} is a project option" + (f" ({'/'.join(strings[k])})"
                                                                          if k in strings else ""))
                else:
                    check(k.startswith("CMAKE_") and cmake_documented(k), f"{name}: -D{k} is a documented CMake variable")
                check("$" not in v, f"{name}: -D{k} has a value after ARG defaults ({v})")
            check(defs.get("GRETA_GPU") == want_gpu[name], f"{name}: GRETA_GPU={want_gpu[name]}")
            if name == "Dockerfile.cuda":
                check(defs.get("CMAKE_CUDA_ARCHITECTURES") == "90a", f"{name}: CMAKE_CUDA_ARCHITECTURES=90a (Hopper)")
            else:
                check(defs.get("GRETA_HIP_ARCHITECTURES") == "gfx942", f"{name}: GRETA_HIP_ARCHITECTURES=gfx942 (MI300X)")
            # the runtime stage installs the packages of the libraries greta needs
            apt = " ".join(subst(rest, args) for i, rest, args, st in ins if i == "RUN" and st == 1)
            build_apt = " ".join(subst(rest, args) for i, rest, args, st in ins if i == "RUN" and st == 0)
            for what, pkg in build_pkgs.items():
                check(pkg is not None and re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", build_apt),
                      f"{name}: the build stage installs {pkg} ({what})")
            for lib, pkg in pkgs.items():
                check(pkg is not None and re.search(rf"(?<![\w-]){re.escape(pkg)}(?![\w-])", apt),
                      f"{name}: the runtime stage installs {pkg} ({lib})")
            # a configure run with the Dockerfile's options (paths mapped to this machine)
            local, why = local_toolchain(defs)
            if local is None:
                print(f"note: {name}: no configure run here: {why}")
                continue
            bdir = os.path.join(tmp, "cfg-" + want_gpu[name])
            cmd = ["cmake", "-S", a.source, "-B", bdir, "-G", "Ninja"] + [f"-D{k}={v}" for k, v in local.items()]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            outp = r.stdout + r.stderr
            check(r.returncode == 0, f"{name}: configure run with its options", outp[-3000:])
            check("Manually-specified variables were not used" not in outp, f"{name}: every -D option is used",
                  outp[-3000:])
            cache = {}
            if os.path.exists(os.path.join(bdir, "CMakeCache.txt")):
                with open(os.path.join(bdir, "CMakeCache.txt"), encoding="utf-8") as f:
                    for line in f:
                        m = re.match(r"([A-Za-z0-9_]+):[A-Z]+=(.*)$", line.strip())
                        if m:
                            cache[m.group(1)] = m.group(2)
            for k, v in local.items():
                check(k in cache, f"{name}: -D{k} is in the CMake cache of the configure run")
                if k in cache and v == defs[k]:
                    check(cache[k] == v, f"{name}: cache {k}={v}", cache[k])
    if not have_dpkg:
        print("note: dpkg/objdump not found: runtime packages not checked")
    finish()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("check", choices=["verify", "policy", "envfile", "install", "lifecycle", "entrypoint",
                                     "dockerfiles"])
    p.add_argument("--source", required=True)
    p.add_argument("--build", required=True)
    a = p.parse_args()
    a.source = os.path.abspath(a.source)
    a.build = os.path.abspath(a.build)
    a.bin = os.path.join(a.build, "bin")
    os.umask(0o022)
    globals()["cmd_" + a.check](a)


if __name__ == "__main__":
    main()
