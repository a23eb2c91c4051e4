"""The first process of every kernel container, and of every spare of the warm pool.

Run by the image's own Python as ``python -c TEXT ARGV...`` (kernels/bootstrap.py composes TEXT:
cache/scripts/link_models.py's text, this file's, then a call of :func:`kernel_main` or
:func:`spare_main`), before the kernel: it makes the user's HOME in the cache and refuses to start
in one that is not the user's own, sets what the engine could not, links the shared models, then
runs the kernel's argv. Self-contained: standard library only, no import of the package, syntax
that old Pythons of images run. Its constants are the package's (a unit test holds them equal).
Nothing here comes from user input but the kernel's argv, which it runs as argv, never as a shell.
"""

import os
import stat
import sys

HOME_REFUSED_EXIT = 78  # the provisioner tells a refused HOME (HomeRefused) from other exits by it
CACHE_MOUNT_ENV = "MLCONTAINER_CACHE"  # where the cache volume is mounted (cache/paths.py)
CONNECTION_FILE = "/run/mlcontainer/kernel.json"  # engines/base.py CONNECTION_FILE_IN_CONTAINER
CONNECTION_SECRET_ENV = "MLCONTAINER_CONNECTION_SECRET"
NO_NEW_PRIVS_ENV = "MLCONTAINER_NO_NEW_PRIVS"
NETWORK_GATE_ENV = "MLCONTAINER_NETWORK_GATE"
NETWORK_GATE_TIMEOUT = 60
CLAIM_FIFO = "/run/mlcontainer/claim"  # a spare waits here for its kernel's part (kernels/pool.py)
SPARE_REEXEC_ENV = "MLCONTAINER_SPARE_REEXEC"
NO_PIP_ENV = "MLCONTAINER_NO_PIP"  # a venv without pip that none could be lent to: what to do instead
# The keeper (keep()): a kernel whose restart may reuse its container. Its files are in the kernel's
# private folder, which the provisioner reads and writes too (kernels/restarts.py).
KEEPER_ENV = "MLCONTAINER_KEEPER"
RESTART_FIFO = "/run/mlcontainer/restart"  # the restart's per-kernel part, as a spare's claim
RESTART_HOLD = "/run/mlcontainer/restart-hold"  # the provisioner's: the kernel's end is a restart's
SHUTDOWN_MARK = "/run/mlcontainer/shutdown"  # the provisioner's: the kernel's end is a shutdown's
KERNEL_ENDED = "/run/mlcontainer/kernel-ended"  # the keeper's: the kernel ended, its container waits
HOLD_GRACE = 0.5  # how long an ended kernel's keeper waits for either word before it ends too
KEEPER_RESUME_ENV = "MLCONTAINER_KEEPER_RESUME"  # a keeper started afresh: the restart it carries on


def refuse(why):
    sys.stderr.write("jupyter-mlcontainer: refusing to start: %s\n" % why)
    sys.exit(HOME_REFUSED_EXIT)


def check_home():
    """Make HOME (in the cache) and refuse to start unless it is this user's own private folder.

    HOME is where a kernel reads code it runs at start (IPython startup files, .pth files in the
    user site, matplotlib config) and every cache that can hold code or credentials, and the
    cache's home/ is open to every user of the engine (sticky, like /tmp): a HOME that someone
    else created, that others can write, or that is reached through a link, could hold their
    code; so could one that cannot be made (never a kernel without it). Every folder between the
    cache and HOME must be a real folder, root's (65534 under a rootless engine's user namespace:
    root of the host) or the user's, and sticky if others may add to it."""
    home = os.environ.get("HOME")
    if not home:
        return
    me = os.getuid()
    top = (os.environ.get(CACHE_MOUNT_ENV) or "").rstrip("/")
    path = top if top and home.startswith(top + "/") else ""
    for part in home[len(path) + 1:].split("/")[:-1] if path else ():
        path += "/" + part
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            break
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, me, 65534) or st.st_mode & 0o1002 == 0o002:
            refuse("%s, above your HOME, is not a safe folder (mode %o, owner uid %d): someone could "
                   "replace your HOME through it" % (path, st.st_mode, st.st_uid))
    try:
        os.makedirs(os.path.dirname(home), exist_ok=True)
        os.mkdir(home, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        refuse("cannot make your HOME %s: %s" % (home, exc))
    st = os.lstat(home)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != me or st.st_mode & 0o022:
        what = "a link" if stat.S_ISLNK(st.st_mode) else "a folder" if stat.S_ISDIR(st.st_mode) else "a file"
        refuse("HOME %s is not your private folder (%s, owner uid %d, you are uid %d, mode %o). Someone "
               "else may have put files there that a kernel would run at start (IPython startup, .pth). "
               "A start sets such a folder aside where it can (a rootful engine, a host folder whose "
               "keeper runs); elsewhere an admin moves it away" % (home, what, st.st_uid, me, stat.S_IMODE(st.st_mode)))


def set_no_new_privileges():
    """Docker's no-new-privileges, where the engine cannot set it (a Swarm service's container
    spec has no field for it in API 1.41): set on this process before the kernel, which inherits
    it with everything it starts (a setuid binary such as sudo no longer raises privileges). A
    kernel that cannot have it does not start."""
    if not os.environ.pop(NO_NEW_PRIVS_ENV, None):
        return
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        failed = libc.prctl(38, *(ctypes.c_ulong(v) for v in (1, 0, 0, 0)))  # PR_SET_NO_NEW_PRIVS
        why = os.strerror(ctypes.get_errno()) if failed else ""
    except (ImportError, OSError, AttributeError) as exc:
        why = str(exc) or type(exc).__name__
    if why:
        sys.stderr.write("jupyter-mlcontainer: refusing to start: cannot set no-new-privileges: %s\n" % why)
        sys.exit(1)


def make_user_site():
    """Make the user site, where `%pip install` goes: Python puts it on sys.path at start only
    if it exists, so without it a kernel could not import the first package installed there
    until a restart. A venv's persistent prefix (PIP_PREFIX, its site folder on PYTHONPATH)
    likewise. Returns (pip_prefix, whether that prefix's site folder was made now)."""
    import site
    if site.ENABLE_USER_SITE:
        try:
            os.makedirs(site.getusersitepackages(), exist_ok=True)
        except OSError:
            pass
    made_prefix_site = False
    pip_prefix = os.environ.get("PIP_PREFIX")
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if pip_prefix else ():
        if entry.startswith(pip_prefix + "/") and not os.path.isdir(entry):
            try:
                os.makedirs(entry)
                made_prefix_site = True
            except OSError:
                pass
    return pip_prefix, made_prefix_site


def explain_missing_pip():
    """A venv without pip that no pip could be lent to (kernels/launch_plan.py): `%pip` runs
    ``python -m pip``, which would print "No module named pip" and let the cell pass as if it
    had installed. A ``pip`` of a private folder on PYTHONPATH answers instead, with what to use,
    and fails. It is no distribution (freeze never sees it) and never persists (it lives in /tmp)."""
    message = os.environ.pop(NO_PIP_ENV, "")
    if not message:
        return
    import tempfile
    try:
        folder = tempfile.mkdtemp(prefix="mlcontainer-no-pip-")
        os.mkdir(os.path.join(folder, "pip"))
        with open(os.path.join(folder, "pip", "__init__.py"), "w") as f:
            f.write("")
        with open(os.path.join(folder, "pip", "__main__.py"), "w") as f:
            f.write("import sys\nsys.stderr.write(%r + '\\n')\nsys.exit(1)\n" % message)
    except OSError:
        return
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = path + os.pathsep + folder if path else folder


def use_swarm_gpus():
    """On a Swarm node the task's GPUs are the generic resources the scheduler assigned it,
    whatever the node's runtime shows: they become the kernel's visible devices."""
    assigned = os.environ.get("DOCKER_RESOURCE_NVIDIA-GPU")
    if assigned:
        os.environ["CUDA_VISIBLE_DEVICES"] = assigned


def connection_file_from_secret():
    """A Swarm task gets its connection file as a (read-only) secret; the kernel writes its file
    back, so it is copied to the writable place its argv names, for the kernel's user alone."""
    secret = os.environ.pop(CONNECTION_SECRET_ENV, None)
    if not secret:
        return
    with open(secret, "rb") as f:
        data = f.read()
    fd = os.open(CONNECTION_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data)
    os.close(fd)


def link_shared_models():
    """Link the model store's verified blobs into the user's own hub cache, with
    cache/scripts/link_models.py (its text precedes this file's in the bootstrap): a model
    another user downloaded loads without a download. A kernel starts whatever the store holds."""
    try:
        globals()["link_models_from_env"](os.environ)
    except Exception as exc:
        sys.stderr.write("jupyter-mlcontainer: shared models not linked: %s\n" % exc)


def wait_for_network(argv, in_process):
    """A kernel whose container joins its network after it started (the provisioner's cold start
    on Unix sockets) waits for the file NETWORK_GATE_ENV names, written once the engine attached
    the network, before it runs: code it runs at start (IPython startup files) finds the network
    up. Meanwhile an ipykernel imports, the longest part of its start."""
    gate = os.environ.pop(NETWORK_GATE_ENV, None)
    if not gate:
        return
    if in_process and argv[2] in ("ipykernel_launcher", "ipykernel"):
        import_ipykernel()  # while the engine attaches the network
    import time
    deadline = time.monotonic() + NETWORK_GATE_TIMEOUT
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            sys.stderr.write("jupyter-mlcontainer: the kernel's network was not attached within %d s\n"
                             % NETWORK_GATE_TIMEOUT)
            sys.exit(1)
        time.sleep(0.002)


def exit_now(code):
    """The kernel returned (it was shut down): end the process as Python would, less the part of
    its teardown that costs. The threads a user started finish, the exit handlers run (IPython's
    history ends its session, logging flushes), every file open() opened is flushed (what
    finalization would have done for a file a notebook left open), then the process ends. Skipped: IPython's
    full gc.collect() at exit (the heap is frozen around the handlers) and the interpreter's
    teardown, ~0.2 s of CPU a kernel, all at once when a server closes many kernels (20 on two
    cores took 3-4 s to end after their shutdown_request; 1 s now)."""
    import atexit
    import gc
    import io
    import threading
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    frozen = hasattr(gc, "freeze")  # Python 3.7+
    if frozen:
        gc.freeze()
    try:
        atexit._run_exitfuncs()
    finally:
        if frozen:
            gc.unfreeze()  # get_objects() leaves out the frozen ones
        if code is not None and not isinstance(code, int):
            os.write(2, ("%s\n" % (code,)).encode(errors="replace"))
            code = 1
        # What open() returns, by its concrete classes (io.IOBase is an ABC: an isinstance check
        # of it over the whole heap costs more than the teardown saved).
        files = (io.TextIOWrapper, io.BufferedWriter, io.BufferedRandom)
        for obj in gc.get_objects():
            if isinstance(obj, files):
                try:
                    if not obj.closed:
                        obj.flush()
                except Exception:
                    pass
        os._exit(code or 0)


def run_or_exec(argv, in_process):
    """Run ``argv`` (``python -m module ...``) in this process when ``in_process``, else exec it."""
    if in_process:
        import runpy
        sys.argv = [argv[2]] + argv[3:]
        code = 0
        try:
            runpy.run_module(argv[2], run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code
        exit_now(code)
    else:
        os.execvp(argv[0], argv)


def import_ipykernel():
    """Import what an ipykernel's start spends most of its time on (ipykernel and IPython,
    ~0.3 s) ahead of it: while the network is attached, in a spare, in a keeper. An image
    without ipykernel is not an error here: its kernel's own start says what is missing."""
    try:
        import ipykernel.ipkernel  # noqa: F401
        import ipykernel.kernelapp  # noqa: F401
    except Exception:
        pass


def site_marks():
    """When each folder imports come from last changed: installing or removing a package (or a
    .pth file, read only at an interpreter's start) changes its folder's. A kernel forked from a
    keeper whose marks changed would run what the keeper imported, so it starts afresh instead."""
    import site
    folders = [e for e in sys.path if e]
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    marks = []
    for folder in folders:
        try:
            marks.append(os.stat(folder).st_mtime_ns)
        except OSError:
            marks.append(None)
    return marks


def end_other_processes():
    """Kill what the ended kernel left running (a subprocess, a background job, a data loader's
    workers), as a new container would have none: every process below this keeper (orphans
    come to it: it is a child subreaper). A process the engine started in the container (a
    `docker exec`, freeze's inventory) is not the kernel's and is left alone. Blocking until reaped."""
    import signal
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open("/proc/%s/stat" % name) as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    me = os.getpid()
    for pid in parents:
        seen, up = set(), parents.get(pid)
        while up and up != me and up not in seen:
            seen.add(up)
            up = parents.get(up)
        if up == me and pid != me:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break


def ended_for_restart():
    """After the kernel ended cleanly: whether the provisioner asked for a restart (it writes its
    word right after its shutdown request; HOLD_GRACE s at most for it). Either word is consumed."""
    import time
    deadline = time.monotonic() + HOLD_GRACE
    while not (os.path.exists(RESTART_HOLD) or os.path.exists(SHUTDOWN_MARK)) and time.monotonic() < deadline:
        time.sleep(0.002)
    hold = os.path.exists(RESTART_HOLD)
    for path in (RESTART_HOLD, SHUTDOWN_MARK):
        try:
            os.unlink(path)
        except OSError:
            pass
    return hold


def wait_for_restart():
    """Say the kernel ended (KERNEL_ENDED) and wait for the restart's part: the environment,
    working directory and argv, as a spare's claim. The container is removed instead when the
    provisioner restarts cold."""
    import json
    if not os.path.exists(RESTART_FIFO):
        os.mkfifo(RESTART_FIFO, 0o600)
    os.close(os.open(KERNEL_ENDED, os.O_WRONLY | os.O_CREAT, 0o600))
    with open(RESTART_FIFO) as f:
        claim = json.load(f)
    os.unlink(KERNEL_ENDED)
    return claim


def keep(argv, in_process):
    """Run the kernel as a child of this process, which stays as the container's keeper, so that
    a restart reuses the container: its ports or socket folder, mounts, GPUs and limits hold, and
    clients stay connected. The keeper has imported what the kernel imports (ipykernel, IPython);
    a restart forks a kernel from it, without an interpreter start or imports (a warm start's
    cost). When a package changed meanwhile (site_marks()), the keeper first starts afresh in
    this same process (resume_keeper()), so it imports what is installed now.

    The container ends as before: a kernel that dies, or ends on its own or for a shutdown, ends
    the keeper with the kernel's exit status (128+N for signal N). Signals for the container
    (an interrupt, a stop) go on to the kernel. Only a kernel ended cleanly after the provisioner
    said "restart" (RESTART_HOLD) is followed by another, once what it left running is killed.
    Without KEEPER_ENV the kernel runs in this process, as it always did."""
    import signal
    if not os.environ.pop(KEEPER_ENV, None):
        run_or_exec(argv, in_process)
        return
    if in_process and argv[2] in ("ipykernel_launcher", "ipykernel"):
        import_ipykernel()  # once, for every kernel this keeper forks
    marks = site_marks()
    for stale in (RESTART_HOLD, SHUTDOWN_MARK, KERNEL_ENDED):  # an earlier container's, in a folder kept
        try:
            os.unlink(stale)
        except OSError:
            pass
    try:
        import ctypes
        ctypes.CDLL(None).prctl(36, ctypes.c_ulong(1), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))
    except (ImportError, OSError, AttributeError):
        pass  # PR_SET_CHILD_SUBREAPER: without it the init reaps the kernel's orphans
    forwarded = [getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
                 if hasattr(signal, n)]
    kernel = [0]

    def forward(signum, frame):
        if kernel[0]:
            try:
                os.kill(kernel[0], signum)
            except OSError:
                pass
        elif signum != signal.SIGINT:  # between two kernels: a stop ends the container
            os._exit(128 + signum)

    for signum in forwarded:
        signal.signal(signum, forward)
    import gc
    if hasattr(gc, "freeze"):  # Python 3.7+: the kernel's collections leave the shared pages alone
        gc.freeze()
    while True:
        pid = os.fork()
        if pid == 0:
            for signum in forwarded:
                signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
            run_or_exec(argv, in_process)
            os._exit(0)
        kernel[0] = pid
        while True:
            try:
                reaped, status = os.waitpid(-1, 0)
            except ChildProcessError:
                reaped, status = pid, 0
            if reaped == pid:
                break
        kernel[0] = 0
        code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        if code != 0 or not ended_for_restart():
            os._exit(code)
        end_other_processes()
        claim = wait_for_restart()
        os.environ.update(claim["env"])
        if in_process and site_marks() != marks and getattr(sys, "orig_argv", None):
            # Packages changed: a keeper started afresh in this same process (the container's)
            # imports what is installed now, for this kernel and the next ones. An interrupt
            # meanwhile is ignored (a disposition execve keeps), not a KeyboardInterrupt.
            import json
            os.environ[KEEPER_RESUME_ENV] = json.dumps({"cwd": claim["cwd"], "argv": claim["argv"]})
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(sys.executable, sys.orig_argv)
        os.environ.pop(KEEPER_ENV, None)
        link_shared_models()
        explain_missing_pip()
        os.chdir(claim["cwd"])
        argv = claim["argv"]
        in_process = (len(argv) >= 3 and argv[1] == "-m" and in_process and site_marks() == marks)


def resume_keeper():
    """A keeper that started itself afresh (keep(), packages changed) carries on with the
    restart it was handed, its environment already set. Returns False when there is none."""
    import json
    resume = os.environ.pop(KEEPER_RESUME_ENV, None)
    if not resume:
        return False
    claim = json.loads(resume)
    link_shared_models()
    explain_missing_pip()
    os.chdir(claim["cwd"])
    argv = claim["argv"]
    in_process = (len(argv) >= 3 and argv[1] == "-m"
                  and os.path.realpath(argv[0]) == os.path.realpath(sys.executable))
    keep(argv, in_process)
    return True


def kernel_main():
    """A kernel's container: the checks, then the kernel. Its usual argv, this same Python with
    ``-m module``, runs in this process: one interpreter start less (~0.03 s of every cold
    start). Not when this Python started before the user site (or a venv's prefix site) it has
    just made existed: Python puts those on sys.path at start only, so then the kernel starts
    afresh; nor for any other argv."""
    import site
    if resume_keeper():
        return
    check_home()
    set_no_new_privileges()
    _, made_prefix_site = make_user_site()
    use_swarm_gpus()
    connection_file_from_secret()
    link_shared_models()
    explain_missing_pip()
    argv = sys.argv[1:]
    usersite = site.getusersitepackages() if site.ENABLE_USER_SITE else None
    in_process = (len(argv) >= 3 and argv[1] == "-m" and os.path.realpath(argv[0]) == os.path.realpath(sys.executable)
                  and not made_prefix_site and not (usersite and usersite not in sys.path))
    wait_for_network(argv, in_process)
    keep(argv, in_process)


def spare_main():
    """A spare of the warm pool (kernels/pool.py): the same HOME check, then the imports a kernel
    start spends most of its time on (ipykernel and IPython: ~0.3 s), then it waits on a FIFO in
    its private folder for the per-kernel part (environment, working directory, argv), which the
    claiming provisioner writes after the connection file. ``python -m module`` argvs run in
    this process, already warm; any other argv is exec'ed.

    The user site (where `%pip install` goes) must be on sys.path as at a cold start: when this
    Python started before the folder existed, it re-executes itself once (so too when it made a
    venv's prefix site: Python takes a PYTHONPATH folder that is missing at start for empty for
    good). A package installed there after the spare imported ipykernel could shadow what it
    imported: then (the folder changed since) the claimed spare execs the kernel afresh in
    place, still without a new container."""
    import json
    import site
    if resume_keeper():
        return
    check_home()
    pip_prefix, made_prefix_site = make_user_site()
    if site.ENABLE_USER_SITE:
        usersite = site.getusersitepackages()
    else:
        usersite = next((e for e in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                         if pip_prefix and e.startswith(pip_prefix + "/")), None)
    if ((usersite and os.path.isdir(usersite) and usersite not in sys.path or made_prefix_site)
            and getattr(sys, "orig_argv", None) and not os.environ.get(SPARE_REEXEC_ENV)):
        os.environ[SPARE_REEXEC_ENV] = "1"  # once
        os.execv(sys.executable, sys.orig_argv)
    os.environ.pop(SPARE_REEXEC_ENV, None)
    marks = site_marks()
    import_ipykernel()  # a warm start's whole point; an image without it imports after the claim
    if not os.path.exists(CLAIM_FIFO):
        os.mkfifo(CLAIM_FIFO, 0o600)
    with open(CLAIM_FIFO) as f:
        claim = json.load(f)
    os.environ.update(claim["env"])  # the image's and the spare's own are the cold start's too
    link_shared_models()
    explain_missing_pip()
    os.chdir(claim["cwd"])
    argv = claim["argv"]
    in_process = len(argv) >= 3 and argv[1] == "-m" and site_marks() == marks
    keep(argv, in_process)
