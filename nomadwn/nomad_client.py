"""Nomad's HTTP API behind a small typed protocol, over python-nomad.

:class:`~nomadwn.nomad.NomadAPI` is what the rest of nomadwn uses; :class:`NomadClient`
is its one real implementation and the only module that imports ``nomad`` (python-nomad).
It fills python-nomad 2.1.0's gaps:

* TLS verification is **on** by default (python-nomad's default is off);
* blocking queries (``?index=N&wait=...``) with the ``X-Nomad-Index`` header kept;
* ``EnforceIndex``/``PreserveCounts`` on register, and the job scale endpoint;
* dispatch with the idempotency token where Nomad reads it (python-nomad's
  ``dispatch_job`` puts it in the body as ``idempotency_token``, which Nomad ignores);
* namespace and region sent on every call (python-nomad skips evaluations);
* one timeout per call, longer than the blocking wait it carries;
* every python-nomad and requests exception becomes a :class:`NomadError` that says
  what failed and what to check, with the ACL token scrubbed from it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import nomad
import nomad.api.base
import nomad.api.exceptions as nomad_exc
import requests

from nomadwn import nomad_api as api
from nomadwn.errors import NomadError
from nomadwn.nomad import (
    Allocation,
    Deployment,
    DispatchedJob,
    DispatchResult,
    Evaluation,
    Indexed,
    JobStatus,
    JobVersion,
    LogFrame,
    LogFrameDecoder,
    LogStream,
    NomadSettings,
    PlanResult,
    RegisterResult,
    diff_lines,
    parse_allocation,
    parse_deployment,
    parse_dispatched_job,
    parse_evaluation,
    parse_failures,
    plan_summary,
    template_changes,
)


def _split_address(address: str) -> tuple[str, bool]:
    parts = urlsplit(address if "://" in address else f"http://{address}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NomadError(f"NOMAD_ADDR {address!r} is not an http(s) address such as https://nomad.example:4646")
    return f"{parts.scheme}://{parts.netloc}", parts.scheme == "https"


class NomadClient:
    """:class:`NomadAPI` over python-nomad. ``session`` lets tests inject a requests session."""

    def __init__(self, settings: NomadSettings, *, session: requests.Session | None = None) -> None:
        self.settings = settings
        address, _ = _split_address(settings.address)
        self._address = address
        verify: bool | str = settings.ca_cert if (settings.verify and settings.ca_cert) else settings.verify
        cert = (settings.client_cert, settings.client_key) if settings.client_cert and settings.client_key else ()
        self._nomad = nomad.Nomad(
            address=address,
            token=settings.token,
            namespace=settings.namespace,
            region=settings.region,
            timeout=settings.timeout,  # type: ignore[arg-type,unused-ignore]  # annotated int; requests takes float
            verify=verify,  # type: ignore[arg-type,unused-ignore]  # requests takes a CA bundle path too
            cert=cert,
            session=session,
        )
        # python-nomad falls back to NOMAD_TOKEN/NOMAD_REGION/NOMAD_NAMESPACE/NOMAD_CLIENT_*
        # whenever a value is None; the settings (which already read the environment) win.
        for endpoint in vars(self._nomad).values():
            if isinstance(endpoint, nomad.api.base.Requester):
                endpoint.token = settings.token
                endpoint.region = settings.region
                endpoint.namespace = settings.namespace
                endpoint.cert = cert

    # -- the one place where python-nomad and requests errors are translated --------------

    def _scrub(self, text: str) -> str:
        token = self.settings.token
        return text.replace(token, "<token>") if token else text

    def _call(
        self,
        what: str,
        endpoint: Any,
        *path: str,
        method: str = "get",
        params: dict[str, Any] | None = None,
        body: Any = None,
        wait: float = 0,
        missing_ok: bool = False,
        stream: bool = False,
    ) -> requests.Response | None:
        query: dict[str, Any] = {"namespace": self.settings.namespace, "region": self.settings.region}
        query.update(params or {})
        timeout = self.settings.timeout + wait * 1.1  # Nomad adds up to wait/16 of jitter
        try:
            response: requests.Response = endpoint.request(
                *path,
                method=method,
                params={k: v for k, v in query.items() if v is not None},
                json=body,
                timeout=timeout,
                stream=stream,
            )
            return response
        except nomad_exc.URLNotFoundNomadException as exc:
            if missing_ok:
                return None
            raise NomadError(
                self._http_message(what, exc, "not found: check the job ID, namespace and region"), status=404
            ) from None
        except nomad_exc.URLNotAuthorizedNomadException as exc:
            raise NomadError(
                self._http_message(
                    what, exc, "permission denied: check that NOMAD_TOKEN is set and its policy allows this"
                ),
                status=403,
            ) from None
        except nomad_exc.BadRequestNomadException as exc:
            raise NomadError(self._http_message(what, exc, "Nomad refused the request"), status=400) from None
        except nomad_exc.VariableConflict as exc:
            raise NomadError(self._http_message(what, exc, "conflict"), status=409) from None
        except nomad_exc.BaseNomadException as exc:
            if isinstance(exc.nomad_resp, requests.Response):
                status = exc.nomad_resp.status_code
                raise NomadError(
                    self._http_message(what, exc, f"Nomad answered HTTP {status}"), status=status
                ) from None
            raise NomadError(self._network_message(what, exc.nomad_resp)) from None
        except requests.RequestException as exc:  # python-nomad's TimeoutNomadException is one of these
            raise NomadError(self._network_message(what, exc)) from None
        except OSError as exc:  # requests raises a plain OSError for a missing CA bundle or client certificate
            raise NomadError(
                self._scrub(
                    f"{what} at {self._address}: cannot use the TLS files ({exc}): check that NOMAD_CACERT,"
                    " NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY name readable PEM files"
                )
            ) from None

    def _http_message(self, what: str, exc: nomad_exc.BaseNomadException, summary: str) -> str:
        body = ""
        if isinstance(exc.nomad_resp, requests.Response):
            body = " ".join(exc.nomad_resp.text.split())[:400]
        detail = f": {body}" if body else ""
        return self._scrub(f"{what} at {self._address}: {summary}{detail}")

    def _network_message(self, what: str, error: object) -> str:
        if isinstance(error, requests.exceptions.SSLError):
            hint = "TLS verification failed: set NOMAD_CACERT to your CA bundle (NOMAD_SKIP_VERIFY only for testing)"
        elif isinstance(error, requests.exceptions.Timeout):
            hint = (
                f"no answer within the timeout ({self.settings.timeout:g}s): is Nomad overloaded or the address wrong?"
            )
        elif isinstance(error, requests.exceptions.ConnectionError):
            hint = "cannot connect: is Nomad running there? check NOMAD_ADDR"
        else:
            hint = f"request failed ({type(error).__name__})"
        return self._scrub(f"{what} at {self._address}: {hint}")

    @staticmethod
    def _index(response: requests.Response) -> int:
        try:
            return int(response.headers.get("X-Nomad-Index", "0"))
        except ValueError:
            return 0

    @staticmethod
    def _blocking(index: int, wait: float) -> dict[str, Any]:
        return {"index": index, "wait": f"{max(int(wait * 1000), 1)}ms"} if wait > 0 else {}

    @staticmethod
    def _json(response: requests.Response | None) -> Any:
        assert response is not None
        return response.json()

    # -- NomadAPI --------------------------------------------------------------------------

    def plan(self, job: api.Job) -> PlanResult:
        """Dry-run the job (``POST /v1/job/<id>/plan`` with a diff)."""
        body = {**job.body(), "Diff": True, "PolicyOverride": False}
        raw = self._json(
            self._call(f"planning job {job.ID}", self._nomad.job, job.ID, "plan", method="post", body=body)
        )
        diff = raw.get("Diff") or {}
        return PlanResult(
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            diff_type=str(diff.get("Type") or "None"),
            changes=diff_lines(diff),
            desired_updates={
                str(g): {str(k): int(v) for k, v in (u or {}).items() if isinstance(v, int)}
                for g, u in ((raw.get("Annotations") or {}).get("DesiredTGUpdates") or {}).items()
            },
            failed_allocs=parse_failures(raw.get("FailedTGAllocs")),
            warnings=str(raw.get("Warnings") or ""),
            summary=plan_summary(diff),
            templates=template_changes(diff),
        )

    def register(self, job: api.Job, *, enforce_index: int | None, preserve_counts: bool) -> RegisterResult:
        """Register the job; with ``enforce_index`` only if its modify index is still that (check-and-set)."""
        body: dict[str, Any] = {**job.body(), "PreserveCounts": preserve_counts}
        if enforce_index is not None:
            body.update(EnforceIndex=True, JobModifyIndex=enforce_index)
        raw = self._json(self._call(f"registering job {job.ID}", self._nomad.jobs, method="post", body=body))
        return RegisterResult(
            eval_id=str(raw.get("EvalID") or ""),
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            warnings=str(raw.get("Warnings") or ""),
        )

    def job(self, job_id: str) -> JobStatus | None:
        """The job's current version, or None if Nomad has no such job."""
        response = self._call(f"reading job {job_id}", self._nomad.job, job_id, missing_ok=True)
        if response is None:
            return None
        raw = response.json()
        return JobStatus(
            id=str(raw["ID"]),
            type=str(raw.get("Type", "")),
            status=str(raw.get("Status", "")),
            version=int(raw.get("Version") or 0),
            stable=bool(raw.get("Stable")),
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            counts={str(g["Name"]): int(g.get("Count") or 0) for g in raw.get("TaskGroups") or []},
        )

    def versions(self, job_id: str) -> list[JobVersion]:
        """Stored versions of the job, newest first."""
        raw = self._json(self._call(f"reading versions of job {job_id}", self._nomad.job, job_id, "versions"))
        return [
            JobVersion(
                version=int(v.get("Version") or 0),
                stable=bool(v.get("Stable")),
                submit_time_ns=int(v.get("SubmitTime") or 0),
            )
            for v in raw.get("Versions") or []
        ]

    def allocations(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[list[Allocation]]:
        """The job's allocations; with ``wait``, blocks until they change past ``index``."""
        response = self._call(
            f"listing allocations of job {job_id}",
            self._nomad.job,
            job_id,
            "allocations",
            params=self._blocking(index, wait),
            wait=wait,
        )
        assert response is not None
        return Indexed([parse_allocation(a) for a in response.json() or []], self._index(response))

    def evaluation(self, eval_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Evaluation]:
        """One evaluation; with ``wait``, blocks until it changes past ``index``."""
        response = self._call(
            f"reading evaluation {eval_id}",
            self._nomad.evaluation,
            eval_id,
            params=self._blocking(index, wait),
            wait=wait,
        )
        assert response is not None
        return Indexed(parse_evaluation(response.json()), self._index(response))

    def latest_deployment(self, job_id: str, *, index: int = 0, wait: float = 0) -> Indexed[Deployment | None]:
        """The job's most recent deployment (None: the job has none, e.g. batch and system jobs)."""
        response = self._call(
            f"reading the deployment of job {job_id}",
            self._nomad.job,
            job_id,
            "deployment",
            params=self._blocking(index, wait),
            wait=wait,
        )
        assert response is not None
        raw = response.json()
        return Indexed(parse_deployment(raw) if raw else None, self._index(response))

    def promote(self, deployment_id: str) -> None:
        """Promote every canary of a deployment."""
        self._call(
            f"promoting deployment {deployment_id}",
            self._nomad.deployment,
            "promote",
            deployment_id,
            method="post",
            body={"DeploymentID": deployment_id, "All": True},
        )

    def revert(self, job_id: str, version: int, *, enforce_prior_version: int | None = None) -> RegisterResult:
        """Revert the job to a stored ``version``."""
        body: dict[str, Any] = {"JobID": job_id, "JobVersion": version}
        if enforce_prior_version is not None:
            body["EnforcePriorVersion"] = enforce_prior_version
        raw = self._json(
            self._call(
                f"reverting job {job_id} to version {version}",
                self._nomad.job,
                job_id,
                "revert",
                method="post",
                body=body,
            )
        )
        return RegisterResult(
            eval_id=str(raw.get("EvalID") or ""),
            job_modify_index=int(raw.get("JobModifyIndex") or 0),
            warnings=str(raw.get("Warnings") or ""),
        )

    def stop(self, job_id: str, *, purge: bool = False) -> str:
        """Stop (and with ``purge``, forget) the job; returns the evaluation ID."""
        raw = self._json(
            self._call(
                f"stopping job {job_id}", self._nomad.job, job_id, method="delete", params={"purge": str(purge).lower()}
            )
        )
        return str(raw.get("EvalID") or "")

    def stop_allocation(self, alloc_id: str) -> str:
        """Stop one allocation; Nomad reschedules a replacement (the count is kept)."""
        raw = self._json(
            self._call(f"stopping allocation {alloc_id}", self._nomad.allocation, alloc_id, "stop", method="post")
        )
        return str(raw.get("EvalID") or "")

    def scale(self, job_id: str, group: str, count: int, message: str) -> str:
        """Set a group's count through the scale endpoint (kept by later registers with PreserveCounts)."""
        body = {"Count": count, "Target": {"Group": group}, "Message": message, "PolicyOverride": False}
        raw = self._json(
            self._call(
                f"scaling job {job_id} group {group} to {count}",
                self._nomad.job,
                job_id,
                "scale",
                method="post",
                body=body,
            )
        )
        return str(raw.get("EvalID") or "")

    def dispatch(self, job_id: str, *, meta: Mapping[str, str], idempotency_token: str) -> DispatchResult:
        """Dispatch one child of the parameterized job ``job_id`` (``POST /v1/job/<id>/dispatch``).

        The body is ``{"Meta": meta}`` with no ``Payload`` (nomadwn's parameterized jobs
        forbid one). The token travels as the ``idempotency_token`` query parameter, where
        Nomad's HTTP API reads it into the request's ``WriteRequest.IdempotencyToken``.

        Nomad's semantics (``Job.Dispatch`` in ``nomad/job_endpoint.go``, 1.9): when any
        child of this parent that has not been garbage-collected carries the same token,
        whatever its status (running or already dead), Nomad creates nothing and returns
        that child's ID with an empty ``EvalID``. So a retry after a lost reply or a
        timeout never starts a second child; but a token must be new for every worker
        wanted, since a reused one keeps returning the old child until job GC removes it.
        Meta and payload are validated before the token is looked at.
        """
        if not idempotency_token:
            raise ValueError("dispatch needs an idempotency token, so that a retried dispatch starts no second child")
        raw = self._json(
            self._call(
                f"dispatching job {job_id}",
                self._nomad.job,
                job_id,
                "dispatch",
                method="post",
                params={"idempotency_token": idempotency_token},
                body={"Meta": dict(meta)},
            )
        )
        return DispatchResult(
            dispatched_job_id=str(raw.get("DispatchedJobID") or ""), eval_id=str(raw.get("EvalID") or "")
        )

    def dispatched(self, parent_id: str) -> list[DispatchedJob]:
        """The children dispatched from the parameterized job ``parent_id`` that Nomad still knows.

        Lists ``GET /v1/jobs?prefix=<parent>/dispatch-`` (a child's ID is
        ``<parent>/dispatch-<unix seconds>-<8 hex>``) and keeps the stubs whose
        ``ParentID`` is the parent, since another job's ID may share the prefix.
        """
        raw = self._json(
            self._call(
                f"listing the dispatched jobs of {parent_id}",
                self._nomad.jobs,
                params={"prefix": f"{parent_id}/dispatch-"},
            )
        )
        return [parse_dispatched_job(stub) for stub in raw or [] if stub.get("ParentID") == parent_id]

    def logs(
        self, alloc_id: str, task: str, *, stream: LogStream = "stdout", follow: bool = False, origin: str = "start"
    ) -> Iterator[LogFrame]:
        """``GET /v1/client/fs/logs/<alloc>`` (api-docs/client.mdx, "Stream Logs"), frame by frame.

        python-nomad's ``client.stream_logs`` reads the whole body and returns text,
        which never ends when following; this streams it (``stream=True``) through the
        same endpoint object. The servers forward the request to the allocation's client.
        Each read waits at most the client timeout; Nomad sends heartbeat frames meanwhile.
        """
        what = f"reading the {stream} of task {task} in allocation {alloc_id}"
        params = {"task": task, "type": stream, "follow": str(follow).lower(), "origin": origin, "offset": 0}
        response = self._call(what, self._nomad.client.stream_logs, alloc_id, params=params, stream=True)
        assert response is not None
        decoder = LogFrameDecoder()
        try:
            for chunk in response.iter_content(chunk_size=None):
                yield from decoder.feed(chunk)
        except requests.RequestException as exc:
            raise NomadError(self._network_message(what, exc)) from None
        except ValueError as exc:
            raise NomadError(self._scrub(f"{what} at {self._address}: {exc}")) from None
        finally:
            response.close()

    def apply_acl_policy(self, name: str, rules: str, *, description: str, namespace: str, job_id: str) -> None:
        """Create or update ACL policy ``name`` attached to job ``job_id`` (``POST /v1/acl/policy/<name>``).

        The ``JobACL`` attachment is what ``nomad acl policy apply -namespace NS -job JOB``
        sends: every task of the job gets the policy through its workload identity. Needs
        a management token.
        """
        body = {
            "Name": name,
            "Description": description,
            "Rules": rules,
            "JobACL": {"Namespace": namespace, "JobID": job_id},
        }
        self._call(f"applying ACL policy {name}", self._nomad.acl, "policy", name, method="post", body=body)
