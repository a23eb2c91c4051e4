"""``jupyter mlcontainer doctor``: is this machine ready for container kernels, and if not, what
to do. One :class:`Check` per question, each with the fix when it fails; ``blocking`` ones
make the command exit non-zero. Blocking calls only: the CLI runs it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from ..core.errors import EngineError
from ..core.identity import current_user
from . import MLContainerService


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    blocking: bool = False  # a failure that stops container kernels from working

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.blocking else "warn")
        return f"[{mark}] {self.name}: {self.detail}" + ("" if self.ok or not self.fix else f"\n       fix: {self.fix}")


def socket_denied(address: str) -> str:
    """Why this user may not use the engine's local socket ("" when that is not the problem)."""
    import grp

    if not address.startswith("unix://"):
        return ""
    path = address[len("unix://"):]
    try:
        st = os.stat(path)
    except OSError:
        return ""
    if os.access(path, os.R_OK | os.W_OK):
        return ""
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    return (f"permission denied on {path}: it is for members of the group {group}, and you "
            f"({current_user().name}) are not one")


def engine_checks(service: MLContainerService) -> list[Check]:
    engine = service.engine
    try:
        info, version = engine.info_sync(), engine.version_sync()
    except EngineError as exc:
        denied = socket_denied(engine.address)
        if denied:
            return [Check("engine", False, denied, blocking=True,
                          fix=f"sudo usermod -aG docker {current_user().name}, then log in again; on a shared box, "
                              "rather a rootless engine of your own (docs/security.md)")]
        return [Check("engine", False, str(exc), blocking=True,
                      fix="start the engine (sudo systemctl start docker), or set c.MLContainer.docker_host / "
                          "DOCKER_HOST to your engine (rootless Docker: unix:///run/user/$UID/docker.sock)")]
    kind = engine.kind_sync()
    checks = [Check("engine", True, f"{kind.title} {version.get('Version')} at {engine.address}"
                    f" (storage {info.get('Driver')}, cgroup v{info.get('CgroupVersion')})")]
    if kind.copying_storage_reason:
        checks.append(Check("image storage", False, kind.copying_storage_reason + ". A Jupyter server's warm pool "
                            "keeps a spare ready per used kernelspec, so only first starts and restarts wait there; "
                            "nbclient, papermill and `jupyter console` wait at every start",
                            fix=kind.copying_storage_fix))
    if kind.limits_ignored_reason:
        checks.append(Check("memory and CPU limits", False, kind.limits_ignored_reason + ": kernelspecs' --memory/--cpus "
                            "are not enforced (each kernel that asks says so)",
                            fix="boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1) and delegate the cpu, memory "
                                "controllers to users (systemd: Delegate=yes in user@.service)"))
    if not kind.rootless:
        checks.append(Check(
            "engine isolation", False,
            "a rootful engine: every member of the docker group is root on this host, so users of a shared box are not "
            "protected from each other", fix="one rootless engine per user (docs/security.md)"))
    runtime = engine.has_nvidia_runtime_sync()
    gpus = service.gpu_monitor.snapshot(with_processes=False)
    if gpus.available and gpus.gpus:
        checks.append(Check("GPUs (NVML)", True, f"{len(gpus.gpus)} GPU(s), driver {gpus.driver_version}"))
        if kind.gpu_devices == "cdi":
            checks.append(Check("NVIDIA CDI devices", runtime, "found (GPUs are asked for as nvidia.com/gpu=...)" if runtime
                                else "none found: this engine takes GPUs as CDI devices",
                                fix="install the NVIDIA Container Toolkit and run `sudo nvidia-ctk cdi generate "
                                    "--output=/etc/cdi/nvidia.yaml`"))
        else:
            checks.append(Check("NVIDIA runtime", runtime, "registered" if runtime else "not registered with the engine",
                                fix="install the NVIDIA Container Toolkit, run `nvidia-ctk runtime configure "
                                    "--runtime=docker` and restart the engine"))
    else:
        checks.append(Check("GPUs (NVML)", True, f"none: {gpus.reason} (kernels run on the CPU)"))
    return checks


def cache_check(service: MLContainerService, image: str | None) -> Check:
    """Can this user's kernels make and write their HOME in the cache? (the cache set up as for a
    kernel start, then a container of the kernel's image as the container user that is this user
    on the host, no network, no capabilities)."""
    from ..cache.paths import DEFAULT_MOUNT_PATH, home_in_cache
    from ..cache.volume import cache_mount, ensure_cache

    name = f"cache volume {service.cache_volume}"
    if image is None:
        return Check(name, True, "not checked: no container kernelspec yet (add one: jupyter mlcontainer kernel add IMAGE)")
    from ..images.probe import probe_image_sync

    user = current_user()
    try:
        facts = probe_image_sync(service.engine, image)
        python = facts.python or "python3"
        notes = ensure_cache(service.engine, service.cache_volume, user, service.settings.helper_image)
        home = home_in_cache(DEFAULT_MOUNT_PATH, user.name)
        code, out, err = service.engine.run_to_completion_sync(
            image, [python, "-c", f"import os, tempfile; os.makedirs({home!r}, 0o700, exist_ok=True); "
                    f"tempfile.NamedTemporaryFile(dir={home!r}).close(); print('writable')"],
            # Under a rootless engine container root is this user (Podman's keep-id is the same
            # host uid); a rootful engine runs the host uid:gid as they are.
            user="0:0" if service.engine.kind_sync().rootless else user.docker_user, cap_drop=["ALL"],
            mounts=[cache_mount(service.cache_volume, DEFAULT_MOUNT_PATH)],
        )
    except EngineError as exc:
        return Check(name, False, str(exc), blocking=True)
    if code == 0 and "writable" in out:
        return Check(name, True, f"your HOME there is writable for {user.name} (uid {user.uid})"
                     + "".join(f"; {note}" for note in notes))
    return Check(name, False, f"not writable for {user.name} (uid {user.uid}): {(err or out).strip()[-300:]}", blocking=True,
                 fix="see docs/security.md (a HOME created by another user is refused on purpose)")


def keeper_check(service: MLContainerService) -> Check:
    """Does the cache's keeper run (cache/scripts/keeper.py: it publishes verified models and
    keeps the layout)? On a rootful engine its container (started with the first kernel); for a
    host folder used through rootless engines, the admin's service on the host (its stamp's age)."""
    from ..cache.host_folder import keeper_age, keeper_command
    from ..cache.paths import is_host_folder
    from ..cache.scripts.layout import STAMP_EVERY
    from ..cache.volume import ROLE_KEEPER
    from ..core.labels import LABEL_CACHE_VOLUME

    cache, engine = service.cache_volume, service.engine
    name = "cache keeper"
    fix = f"an admin runs, as root on the host: {keeper_command(cache)}"
    try:
        if not engine.kind_sync().rootless:
            keepers = [c for c in engine.our_containers_sync(ROLE_KEEPER)
                       if (c.get("Labels") or {}).get(LABEL_CACHE_VOLUME) == cache and c.get("State") == "running"]
            if keepers:
                return Check(name, True, f"running (container {keepers[0]['Id'][:12]})")
            return Check(name, True, "starts with the first container kernel")
    except EngineError as exc:
        return Check(name, False, str(exc))
    if not is_host_folder(cache):
        return Check(name, True, f"not needed: only your own kernels use {cache} on your rootless engine")
    age = keeper_age(cache)
    if age is None:
        return Check(name, False, f"not running for {cache}: models downloaded by one user are not shared with "
                     "the others, and a HOME someone else made at your name is not set aside", fix=fix)
    if age > 3 * STAMP_EVERY:
        return Check(name, False, f"last seen {int(age)} s ago for {cache}", fix=fix)
    return Check(name, True, f"running for {cache}")


def init_check(service: MLContainerService, image: str) -> Check | None:
    """Kernels run with an init process (use_init); Podman's is catatonit, a package of its own."""
    engine = service.engine
    if engine.kind_sync().product != "podman":
        return None
    try:
        code, out, err = engine.run_to_completion_sync(image, ["true"], init=True, cap_drop=["ALL"])
    except EngineError as exc:
        code, err = -1, str(exc)
    if code == 0:
        return Check("container init", True, "Podman's init (catatonit) works")
    return Check("container init", False, f"a container with an init process fails: {(err or out).strip()[-300:]}",
                 blocking=True, fix="install catatonit on the engine's host (Debian/Ubuntu: apt install catatonit), "
                                    "or set c.DockerKernelProvisioner.use_init = False")


# Run in the test container: the NVIDIA GPUs it was given, as device nodes (what the NVIDIA
# runtime and CDI specs both put there; nvidia-smi may be missing from an image).
_COUNT_GPUS = "import glob; print('GPUS', len(glob.glob('/dev/nvidia[0-9]*')))"


def gpu_container_check(service: MLContainerService, image: str) -> Check | None:
    """Does a container asking for every GPU get them? Only where the engine can give GPUs (its
    NVIDIA runtime or CDI devices): a throw-away container of a kernelspec's image, no network,
    no capabilities, removed afterwards."""
    import uuid

    from ..core.identity import owner_id
    from ..core.labels import LABEL_OWNER, LABEL_ROLE
    from ..engines.base import ContainerSpec, GpuRequest
    from ..images.probe import probe_image_sync

    engine = service.engine
    if not engine.has_nvidia_runtime_sync():
        return None
    name = "GPUs in a container"
    expected = service.gpu_monitor.gpu_count()
    python = probe_image_sync(engine, image).python or "python3"
    spec = ContainerSpec(
        image=image, entrypoint=[python, "-c", _COUNT_GPUS], command=[], name=f"mlc-doctor-gpus-{uuid.uuid4().hex[:8]}",
        labels={LABEL_ROLE: "probe", LABEL_OWNER: owner_id()}, gpus=[GpuRequest(count=-1)], cap_drop=["ALL"],
        network="none",
    )
    try:
        attrs = engine.create_and_start_sync(spec)
    except EngineError as exc:
        return Check(name, False, f"a container asking for the GPUs is refused: {exc}", blocking=False,
                     fix="see the runtime / CDI check above")
    try:
        engine.wait_container_sync(attrs["Id"], timeout=120)
        out = engine.container_logs_sync(attrs["Id"])
    finally:
        engine.remove_container_sync(attrs["Id"])
    seen = next((int(line.split()[1]) for line in out.splitlines() if line.startswith("GPUS ")), None)
    if seen is None:
        return Check(name, False, f"the test container said nothing readable: {out.strip()[-300:]}")
    if seen == 0 or (expected and seen < expected):
        return Check(name, False, f"a container asking for every GPU sees {seen}" + (f" of {expected}" if expected else ""),
                     fix="check the NVIDIA Container Toolkit's configuration (nvidia-ctk runtime configure, or "
                         "nvidia-ctk cdi generate) and restart the engine")
    return Check(name, True, f"a container asking for every GPU sees {seen}")


def kernelspec_checks(service: MLContainerService) -> tuple[list[Check], str | None]:
    from ..images.probe import probe_image_sync, unusable_reason

    checks, usable = [], None
    specs = service.kernelspecs()
    if not specs:
        return [Check("container kernels", True, "none yet (add one: jupyter mlcontainer kernel add IMAGE)")], None
    for spec in specs:
        try:
            facts = probe_image_sync(service.engine, spec.image)
            reason = unusable_reason(spec.image, facts)
        except EngineError as exc:
            reason = str(exc)
        if reason:
            checks.append(Check(f"kernel {spec.name}", False, reason,
                                fix=f"jupyter mlcontainer image prepare {spec.image}, or pull it"))
        else:
            usable = usable or spec.image
            checks.append(Check(f"kernel {spec.name}", True, f"{spec.image}: {facts.summary() or 'Python'}, ipykernel {facts.ipykernel}"))
    return checks, usable


def extension_checks() -> list[Check]:
    from jupyter_core.paths import jupyter_config_path, jupyter_path

    enabled = False
    for folder in jupyter_config_path():
        path = os.path.join(folder, "jupyter_server_config.d", "jupyter_mlcontainer.json")
        try:
            with open(path) as f:
                enabled = enabled or bool(json.load(f)["ServerApp"]["jpserver_extensions"].get("jupyter_mlcontainer"))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    lab = any(os.path.isfile(os.path.join(p, "jupyter-mlcontainer", "package.json")) for p in jupyter_path("labextensions"))
    return [
        Check("server extension", enabled, "enabled" if enabled else "not enabled", blocking=not enabled,
              fix="jupyter server extension enable jupyter_mlcontainer"),
        Check("JupyterLab extension", lab, "installed" if lab else "not found (the panel will be missing)",
              fix="pip install --force-reinstall jupyter-mlcontainer"),
    ]


def run_checks(service: MLContainerService) -> list[Check]:
    checks = engine_checks(service)
    engine_ok = checks[0].ok
    image = None
    if engine_ok:
        specs, image = kernelspec_checks(service)
        checks += specs
        checks.append(cache_check(service, image))
        checks.append(keeper_check(service))
        for extra in (init_check(service, image), gpu_container_check(service, image)) if image else ():
            if extra:
                checks.append(extra)
    return checks + extension_checks()


def notebook_checks(service: MLContainerService, notebook: str) -> list[Check]:
    """``doctor --notebook NB``: whether this host runs the frozen notebook's GPU code as it ran
    (its record's facts against the driver and GPUs here); the notes as passing lines."""
    fit = service.notebook_host_fit(notebook)
    checks = [Check(f"notebook {check.name}", check.verdict == "holds", check.reason, check.fix,
                    blocking=check.verdict == "blocks") for check in fit.checks]
    checks += [Check("notebook", True, note) for note in fit.notes]
    return checks


def report(checks: list[Check], as_json: bool) -> tuple[str, int]:
    code = 1 if any(c.blocking and not c.ok for c in checks) else 0
    if as_json:
        return json.dumps({"ok": code == 0, "checks": [asdict(c) for c in checks]}, indent=2), code
    return "\n".join(c.line() for c in checks), code

