"""Thin REST handlers under ``{base_url}mlcontainer/api/``: parse, call the service, map errors.

Every operation is a method of :class:`~.service.MLContainerService` (the CLI and the widgets
call the same ones); blocking calls run in the engine's thread pool, never on the event loop.
The project's errors become JSON ``{"message": ...}`` with the status each error carries.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
from typing import Any, Callable

import tornado.web
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ..core.errors import BadRequest, MLContainerError, RequestTooLarge, status_for
from ..core.names import METADATA_KEY, check_reference
from ..core.policy import resolve_under
from ..service import MLContainerService

_DOMAIN_ERRORS = (MLContainerError,)  # raised on purpose: anything else is a bug, a 500 with its traceback
MAX_BODY = 1 << 20


# The resource a deployment's Authorizer sees for every route here (JupyterHub scopes, read-only
# shares): GET is "read", POST "write", DELETE "delete"; routes that run code (freeze asks the
# kernel; build and restore run a Dockerfile's RUN lines) are "execute".
AUTH_RESOURCE = "mlcontainer"


class BaseHandler(APIHandler):
    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> MLContainerService:
        return self.settings["mlcontainer"]

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking service code in the engine's thread pool, off the event loop."""
        return await self.service.engine.run_blocking(fn, *args)

    def prepare(self):  # type: ignore[override]
        """Refuse bodies over :data:`MAX_BODY` before reading them (every route takes small JSON)."""
        length = self.request.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > MAX_BODY:
            raise RequestTooLarge(f"The request body is {int(length)} bytes; this API takes at most 1 MB")
        return super().prepare()

    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise BadRequest("The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise BadRequest("The request body must be a JSON object")
        return body

    def write_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data, default=str))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        exc = exc_info[1] if exc_info else None
        if isinstance(exc, _DOMAIN_ERRORS):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"message": str(exc), "error": type(exc).__name__}))
            return
        super().write_error(status_code, **kwargs)

    def log_exception(self, typ, value, tb) -> None:  # domain errors are expected: no traceback
        if isinstance(value, _DOMAIN_ERRORS):
            self.log.warning("%s %s: %s", self.request.method, self.request.uri, value)
            return
        super().log_exception(typ, value, tb)

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        exc_info = kwargs.get("exc_info")
        if exc_info and isinstance(exc_info[1], _DOMAIN_ERRORS) and status_code == 500:
            status_code = status_for(exc_info[1])
        super().send_error(status_code, **kwargs)

    async def notebook_paths(self) -> dict[str, str]:
        """kernel id -> notebook path, from the server's sessions."""
        sessions = await self.session_manager.list_sessions()
        return {s["kernel"]["id"]: s.get("path") for s in sessions if s.get("kernel")}

    def container_kernels(self) -> dict[str, dict[str, Any]]:
        """kernel id -> kernelspec, image, container id of the kernel manager's container kernels
        (this server's own, wherever they run)."""
        return self.service.container_kernels(self.kernel_manager)


class StatusHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.run_blocking(self.service.status))


class ImagesHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"images": await self.run_blocking(self.service.images)})

    @tornado.web.authenticated
    @authorized("delete")
    async def delete(self) -> None:
        """Remove ``?image=`` (a tag or an id); 409 naming the kernelspecs or kernels using it."""
        image = self.get_query_argument("image", "")
        if not image:
            raise BadRequest("Give the image to remove: ?image=repo:tag (or its id)")
        self.write_json(await self.run_blocking(self.service.remove_image, image))


class PullHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        image = self.json_body().get("image")
        if not isinstance(image, str):
            raise BadRequest('Give the image to pull: {"image": "repo:tag"}')
        job = self.service.pull(image)
        self.write_json({"job": job.to_dict()}, status=202)


class JobsHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json({"jobs": [job.to_dict() for job in self.service.jobs.list()]})


class JobHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self, job_id: str) -> None:
        self.write_json(self.service.jobs.get(job_id).to_dict())

    @tornado.web.authenticated
    @authorized("delete")
    async def delete(self, job_id: str) -> None:
        self.write_json(self.service.jobs.cancel(job_id).to_dict())


class KernelspecsHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        specs = await self.run_blocking(self.service.kernelspecs)
        self.write_json({"kernelspecs": [spec.to_dict() for spec in specs]})

    @tornado.web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        image = body.get("image")
        if not isinstance(image, str) or not image.strip():
            raise BadRequest('Give the image: {"image": "repo:tag"}')
        spec = await self.run_blocking(lambda: self.service.add_kernelspec(
            image.strip(), name=body.get("name"), display=body.get("display_name"), gpus=body.get("gpus"),
            memory=body.get("memory"), cpus=body.get("cpus"), shm_size=body.get("shm_size"), env=body.get("env"),
        ))
        self.write_json({"kernelspec": spec.to_dict()}, status=201)


class KernelspecHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized("delete")
    async def delete(self, name: str) -> None:
        """Remove a container kernelspec (other kernels are refused: not ours to remove)."""
        path = await self.run_blocking(self.service.remove_kernelspec, name)
        self.write_json({"removed": name, "resource_dir": path})


class KernelsHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        paths = await self.notebook_paths()
        kernels = await self.run_blocking(functools.partial(self.service.kernels, paths, known=self.container_kernels()))
        self.write_json({"kernels": kernels})


class KernelHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized("delete", resource="kernels")
    async def delete(self, kernel_id: str) -> None:
        """Stop one of this server's container kernels (on its engine or a cluster), through the
        server's kernel manager: what jupyter_server's own DELETE /api/kernels/<id> does, so the
        Authorizer is asked the same question (``delete`` on ``kernels``). A kernel whose job still
        waits in a cluster's queue (its start has not returned) is cancelled there."""
        if kernel_id not in self.container_kernels():
            # A kernel still starting, its job waiting in a cluster's queue: cancel the job.
            if await self.run_blocking(self.service.cancel_queued_kernel, kernel_id):
                self.set_status(204)
                self.finish()
                return
            raise tornado.web.HTTPError(404, f"No container kernel {kernel_id} on this server")
        await self.kernel_manager.shutdown_kernel(kernel_id)
        self.set_status(204)
        self.finish()


class FreezeHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized("execute")
    async def post(self, kernel_id: str) -> None:
        """Freeze a running container kernel into the notebook's folder (409 if files exist)."""
        body = self.json_body()
        # Only this server's kernels: the kernel id alone also matches containers of other
        # servers (other users) on the same engine.
        if kernel_id not in self.kernel_manager:
            raise tornado.web.HTTPError(404, f"No container kernel {kernel_id} on this server")
        notebook = (await self.notebook_paths()).get(kernel_id)
        path = os.path.join(self.settings.get("server_root_dir", ""), notebook) if notebook else None
        km = self.kernel_manager.get_kernel(kernel_id)
        await asyncio.wait_for(asyncio.shield(km.ready), timeout=180)  # a restart in progress
        result, record = await self.run_blocking(lambda: self.service.freeze_kernel(
            kernel_id, km.get_connection_info(), force=bool(body.get("force")), notebook=path,
        ))
        data = result.to_dict()
        if record is not None:
            # The front end puts this into the open notebook's metadata (writing the file here
            # would fight with the unsaved document in the browser).
            data["notebook_path"] = notebook
            data["notebook_metadata"] = {METADATA_KEY: record}
        self.write_json(data, status=201)


def _local_path(handler: APIHandler, relative: str) -> str:
    """A path the client names relative to the server root, refused if it leaves the root."""
    root = handler.settings.get("server_root_dir") or os.getcwd()
    return resolve_under(root, relative.lstrip("/") or ".", "Path", base_name="the server's root directory")


class BuildHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized("execute")
    async def post(self) -> None:
        """Build an image from a Dockerfile under the server root: 202 with the job to follow."""
        body = self.json_body()
        dockerfile, tag = body.get("dockerfile"), body.get("tag")
        if not isinstance(dockerfile, str) or not isinstance(tag, str) or not tag.strip():
            raise BadRequest('Give {"dockerfile": "folder/Dockerfile", "tag": "name:tag"}')
        raw_args = body.get("build_args") or {}
        if not isinstance(raw_args, dict) or not all(isinstance(v, (str, int, float)) for v in raw_args.values()):
            raise BadRequest('build_args: give names and values, {"PIP_NO_INDEX": "1"}')
        build_args = {str(k): str(v) for k, v in raw_args.items()}
        check_reference(tag.strip())
        path = _local_path(self, dockerfile)
        # The context is checked from the thread pool: a large one never stalls the loop.
        job = await self.run_blocking(lambda: self.service.build(path, tag.strip(), build_args=build_args))
        self.write_json({"job": job.to_dict()}, status=202)


class RestoreHandler(BaseHandler):
    """Restore a frozen notebook's kernel: GET shows the plan, POST does it (restore.py)."""

    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        """The plan for ``?path=``: image and where it comes from, the Dockerfile's text and the
        files its build would send, the kernelspec it would write, and the fingerprint that
        POST must send back. Changes nothing."""
        path = self.get_query_argument("path", "")
        if not path:
            raise BadRequest("Give the notebook: ?path=folder/notebook.ipynb")
        plan = await self.run_blocking(self.service.restore_plan, _local_path(self, path))
        self.write_json(plan.public())

    @tornado.web.authenticated
    @authorized("execute")
    async def post(self) -> None:
        """Do the plan the user saw: {"path", "fingerprint"}. 200 {"kernelspec", ...} when the
        image is here, else 202 {"job"} pulling or building it (the job's result names the
        kernelspec once written). 409 when anything changed since the plan was shown, or when a
        check of this host blocks (unless ``"ignore_checks": true``)."""
        body = self.json_body()
        path, fingerprint = body.get("path"), body.get("fingerprint")
        ignore_checks = body.get("ignore_checks", False)
        if not isinstance(ignore_checks, bool):
            raise BadRequest('"ignore_checks" is true or false')
        if not isinstance(path, str) or not isinstance(fingerprint, str):
            raise BadRequest(
                'Give the notebook and the plan you confirmed: {"path": "folder/notebook.ipynb", '
                '"fingerprint": "..."} (GET notebooks/restore?path=... shows the plan)'
            )
        outcome = await self.run_blocking(lambda: self.service.start_restore(
            _local_path(self, path), fingerprint, ignore_checks=ignore_checks))
        if "job" in outcome:
            self.write_json({"job": outcome["job"].to_dict()}, status=202)
        else:
            self.write_json(outcome)


class GpusHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        paths = await self.notebook_paths()
        self.write_json(await self.run_blocking(self.service.gpus, paths))


class VolumesHandler(BaseHandler):
    @tornado.web.authenticated
    @authorized
    async def get(self) -> None:
        self.write_json(await self.run_blocking(self.service.volumes))


def route_table() -> list[tuple[str, type]]:
    """Routes relative to the server's base_url (ExtensionApp prepends it)."""
    prefix = "/mlcontainer/api"
    routes = [
        ("status", StatusHandler),
        ("images", ImagesHandler),
        ("images/pull", PullHandler),
        ("jobs", JobsHandler),
        (r"jobs/(?P<job_id>[0-9a-f]+)", JobHandler),
        ("kernelspecs", KernelspecsHandler),
        (r"kernelspecs/(?P<name>[A-Za-z0-9._-]+)", KernelspecHandler),
        ("kernels", KernelsHandler),
        (r"kernels/(?P<kernel_id>[0-9a-fA-F-]+)", KernelHandler),
        (r"kernels/(?P<kernel_id>[0-9a-fA-F-]+)/freeze", FreezeHandler),
        ("images/build", BuildHandler),
        ("notebooks/restore", RestoreHandler),
        ("gpus", GpusHandler),
        ("volumes", VolumesHandler),
    ]
    return [(url_path_join(prefix, path), handler) for path, handler in routes]
