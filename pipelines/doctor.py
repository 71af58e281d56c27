"""``tunekit doctor``: the preflight of a real Google Cloud project, one line per check.

Each check prints ``ok`` and what it found, or ``FAIL``, the problem and the exact command that fixes it:
credentials and account, the APIs a run uses, the images the spec names, the pipeline root, the service account,
the Gemini models the config names (served in the region: a countTokens call, which Vertex does not bill), the
embedding template's declared parameters against the ones tunekit sends, the open model a managed tuning tunes
(offered in the region), a reinforcement run's reward file (Vertex's ``validate_reward`` on a row of the prompt
dataset), and what the run's model calls cost.
``tunekit submit`` and ``tunekit schedule create`` run it first (``--skip-doctor`` skips it).

The calls are the documented REST or client-library ones (each cited where it is made). Every Google endpoint
honours ``TUNEKIT_VERTEX_BASE_URL``: ``https://HOST/PATH`` is then asked of ``BASE/HOST/PATH`` (Cloud Storage and
the Gemini client use the base itself), so the test fake serves them all on loopback.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from tunekit.components.common.errors import LOGIN, UserError, cloud_user_error
from tunekit.components.common.image import (
    chosen_images,
    names_unpublished_image,
    publish_command,
    unpublished_image_error,
)

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
#: The APIs every Vertex run uses: pipelines and models (aiplatform), the pipeline root and data (storage), the
#: images and templates (artifactregistry). Cloud Build builds the images (make publish-image).
APIS = ("aiplatform.googleapis.com", "storage.googleapis.com", "artifactregistry.googleapis.com")
CLOUDBUILD_API = "cloudbuild.googleapis.com"
#: Config fields that name a model a run calls on Vertex.
MODEL_FIELDS = ("base_model", "teacher_model", "student_model", "judge_model")
#: Config fields naming an open model a managed tuning tunes, and the field choosing that step's backend.
OPEN_MODEL_FIELDS = (("base_model", "backend"), ("student_model", "student_backend"))
#: Where a ready project's reward check finds no row to score: a prompt of this text with every reference blank.
SAMPLE_PROMPT = "tunekit doctor"
#: Permissions the pipeline root needs: Vertex writes and reads the run's artifacts there.
ROOT_PERMISSIONS = ("storage.objects.create", "storage.objects.get", "storage.objects.list")
PRICING_PAGE = "https://cloud.google.com/vertex-ai/generative-ai/pricing"
_AR_IMAGE = re.compile(
    r"^(?P<location>[a-z0-9-]+)-docker\.pkg\.dev/(?P<project>[^/]+)/(?P<repository>[^/]+)/"
    r"(?P<package>[^:@]+)(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]+))?$"
)
_SPEC_IMAGE = re.compile(r"^\s*(?:image|image_uri): ['\"]?([^\s'\"]+)", flags=re.M)


@dataclass
class Check:
    """One check's result: ``ok``, or the problem and what to run (``detail``)."""

    name: str
    ok: bool
    detail: str
    skipped: bool = False

    def line(self) -> str:
        """The check as one printed line."""
        mark = "skip" if self.skipped else ("ok  " if self.ok else "FAIL")
        return f"{mark}  {self.name}: {self.detail}"


@dataclass
class DoctorOptions:
    """What the preflight looks at.

    Attributes:
        project: The Google Cloud project.
        region: The Vertex AI region.
        method: The pipeline (None: the checks that need a config are skipped).
        config: The method's config.
        image: The component image ('' for ``TUNEKIT_IMAGE``).
        template: A compiled spec or an Artifact Registry template URL ('' compiles the method).
        pipeline_root: The runs' gs:// folder ('' skips the check).
        service_account: The service account the steps run as ('' for Vertex's default).
        spec_text: The spec itself, as YAML (a submission passes the one it built: nothing compiled or read
            again); '' reads ``template`` or compiles the method.
    """

    project: str
    region: str
    method: object = None
    config: object = None
    image: str = ""
    template: str = ""
    pipeline_root: str = ""
    service_account: str = ""
    spec_text: str = ""


def base_url() -> str:
    """``TUNEKIT_VERTEX_BASE_URL`` (read now), or ''."""
    from tunekit.components.model_clients.vertex import base_url_override

    return (base_url_override() or "").rstrip("/")


def google_url(url: str) -> str:
    """``url`` (``https://HOST/PATH``), or ``BASE/HOST/PATH`` under ``TUNEKIT_VERTEX_BASE_URL``."""
    base = base_url()
    return f"{base}/{url.removeprefix('https://')}" if base else url


class Doctor:
    """Runs the checks of :class:`DoctorOptions`; :meth:`run` returns them in order.

    Args:
        options: What to check.
        credentials: Google credentials (default: Application Default Credentials, refreshed by the first check).
        genai_client: A google-genai client for the model check (default: tunekit's Vertex client).
    """

    def __init__(self, options: DoctorOptions, *, credentials=None, genai_client=None):
        self.options = options
        self.credentials = credentials
        self.account = ""
        self.genai_client = genai_client
        self._session = None
        self._image_missing = False

    # --- plumbing ----------------------------------------------------------------------------------------------

    def session(self):
        """An authorized requests session with the checked credentials."""
        from google.auth.transport.requests import AuthorizedSession

        if self._session is None:
            self._session = AuthorizedSession(self.credentials)
        return self._session

    def get(self, url: str):
        """GET of a Google REST URL (through :func:`google_url`); returns the response."""
        return self.session().get(google_url(url), timeout=30)

    def member(self, email: str = "") -> str:
        """The IAM member of ``email`` (default: the checked account): ``serviceAccount:`` or ``user:``."""
        email = email or self.account or "ACCOUNT"
        return f"{'serviceAccount' if email.endswith('.gserviceaccount.com') else 'user'}:{email}"

    def _failure(self, exc: BaseException) -> str:
        translated = cloud_user_error(exc, project=self.options.project)
        return translated.message if translated else f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"

    def _http_problem(self, response, what: str) -> str:
        try:
            message = response.json().get("error", {}).get("message", "")
        except ValueError:
            message = response.text[:200]
        message = " ".join(str(message).split())
        if response.status_code in (401, 403):
            return (
                f"{what} is not readable by {self.account or 'this account'} ({response.status_code}: {message})"
            )
        return f"{what}: HTTP {response.status_code} {message}"

    # --- the checks --------------------------------------------------------------------------------------------

    def check_credentials(self) -> Check:
        """Application Default Credentials exist and refresh (google-auth's ``google.auth.default``)."""
        import google.auth
        from google.auth.transport.requests import Request

        try:
            if self.credentials is None:
                self.credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM])
            if not self.credentials.valid:
                self.credentials.refresh(Request())
        except Exception as exc:  # noqa: BLE001 - every failure is reported as the check's
            self.credentials = None
            return Check(
                "credentials", False, self._failure(exc) if cloud_user_error(exc) else f"{exc}: run '{LOGIN}'"
            )
        email = getattr(self.credentials, "service_account_email", "") or ""
        self.account = (email if email and email != "default" else "") or getattr(self.credentials, "account", "")
        shown = self.account or type(self.credentials).__name__
        return Check("credentials", True, f"Application Default Credentials of {shown}")

    def check_apis(self) -> Check:
        """The APIs are enabled.

        Source: Service Usage ``services.get``: https://cloud.google.com/service-usage/docs/reference/rest/v1/services/get.
        """
        project = self.options.project
        wanted = list(APIS) + ([CLOUDBUILD_API] if self._image_missing else [])
        disabled, unreadable = [], []
        for service in wanted:
            response = self.get(f"https://serviceusage.googleapis.com/v1/projects/{project}/services/{service}")
            if response.status_code == 200 and response.json().get("state") == "ENABLED":
                continue
            if response.status_code in (200, 404):
                disabled.append(service)
            else:
                unreadable.append(self._http_problem(response, service))
        if unreadable:
            return Check(
                "apis",
                False,
                f"{'; '.join(unreadable)}: grant roles/serviceusage.serviceUsageConsumer, e.g. 'gcloud projects "
                f"add-iam-policy-binding {project} --member={self.member()} "
                "--role=roles/serviceusage.serviceUsageConsumer'",
            )
        if disabled:
            return Check(
                "apis",
                False,
                f"not enabled: {', '.join(disabled)}: run 'gcloud services enable {' '.join(disabled)} --project {project}'",
            )
        return Check("apis", True, f"enabled: {', '.join(wanted)}")

    def spec_images(self) -> list[str]:
        """The images the run's spec names: the given template's, or the method compiled with the chosen image."""
        options = self.options
        text = options.spec_text
        if text:
            pass
        elif options.template.startswith("https://"):
            response = self.get(options.template)
            if response.status_code != 200:
                raise UserError(self._http_problem(response, f"template {options.template}"))
            text = response.text
        elif options.template:
            with open(options.template, encoding="utf-8") as handle:
                text = handle.read()
        else:
            image, gpu_image = chosen_images(options.image)
            if not image or names_unpublished_image(image) or options.method is None:
                return [image] if image else []
            from tunekit.pipelines.compile import compile_method

            with tempfile.TemporaryDirectory() as tmp:
                path = compile_method(
                    options.method, os.path.join(tmp, "spec.yaml"), image=image, gpu_image=gpu_image or None
                )
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
        return sorted(set(_SPEC_IMAGE.findall(text)))

    def check_images(self) -> Check:
        """Every image the spec names is in Artifact Registry and readable.

        Source: ``packages.tags.get`` / ``packages.versions.get``: https://cloud.google.com/artifact-registry/docs/reference/rest/v1/projects.locations.repositories.packages.tags/get.
        """
        options = self.options
        try:
            images = self.spec_images()
        except UserError as exc:
            return Check("images", False, exc.message)
        if not images or any(names_unpublished_image(i) for i in images):
            self._image_missing = True
            return Check("images", False, unpublished_image_error(options.project, options.region).message)
        problems = []
        for image in images:
            m = _AR_IMAGE.match(image)
            if m is None:
                continue  # another registry: pulled as Vertex pulls it, not checked here
            parent = (
                f"https://artifactregistry.googleapis.com/v1/projects/{m['project']}/locations/{m['location']}/"
                f"repositories/{m['repository']}/packages/{quote(m['package'], safe='')}"
            )
            url = f"{parent}/versions/{m['digest']}" if m["digest"] else f"{parent}/tags/{m['tag'] or 'latest'}"
            response = self.get(url)
            if response.status_code == 200:
                continue
            if response.status_code == 404:
                self._image_missing = True
                problems.append(
                    f"{image} does not exist: build it with '{publish_command(m['project'], m['location'])}'"
                )
            else:
                member = self.member(options.service_account)
                problems.append(
                    f"{self._http_problem(response, image)}: run 'gcloud artifacts repositories add-iam-policy-binding "
                    f"{m['repository']} --location {m['location']} --project {m['project']} --member={member} "
                    "--role=roles/artifactregistry.reader'"
                )
        if problems:
            return Check("images", False, "; ".join(problems))
        return Check("images", True, f"{len(images)} image(s) found and readable: {', '.join(images)}")

    def check_pipeline_root(self) -> Check:
        """The pipeline root's bucket exists and this account may write there.

        Source: google-cloud-storage's ``Bucket.test_iam_permissions``: https://cloud.google.com/storage/docs/json_api/v1/buckets/testIamPermissions.
        """
        from google.api_core import exceptions
        from google.cloud import storage

        options = self.options
        root = options.pipeline_root
        if not root:
            return Check("pipeline root", True, "none given (pass --pipeline-root gs://BUCKET/PATH)", skipped=True)
        if not root.startswith("gs://"):
            return Check("pipeline root", False, f"'{root}' is not a gs:// folder: give gs://BUCKET/PATH")
        bucket_name = root[len("gs://") :].split("/", 1)[0]
        base = base_url()
        client = storage.Client(
            project=options.project,
            credentials=self.credentials,
            client_options={"api_endpoint": base} if base else None,
        )
        try:
            granted = set(client.bucket(bucket_name).test_iam_permissions(list(ROOT_PERMISSIONS)))
        except exceptions.NotFound:
            return Check(
                "pipeline root",
                False,
                f"bucket gs://{bucket_name} does not exist: run 'gcloud storage buckets create gs://{bucket_name} "
                f"--location {options.region} --project {options.project}'",
            )
        except Exception as exc:  # noqa: BLE001
            return Check("pipeline root", False, self._failure(exc))
        missing = [p for p in ROOT_PERMISSIONS if p not in granted]
        if missing:
            member = self.member(options.service_account)
            return Check(
                "pipeline root",
                False,
                f"{self.account or 'this account'} lacks {', '.join(missing)} on gs://{bucket_name}: run 'gcloud storage "
                f"buckets add-iam-policy-binding gs://{bucket_name} --member={member} --role=roles/storage.objectAdmin'",
            )
        return Check("pipeline root", True, f"gs://{bucket_name} exists and is writable")

    def check_service_account(self) -> Check:
        """The service account exists and is enabled.

        Source: IAM ``projects.serviceAccounts.get``: https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/get.
        """
        options = self.options
        email = options.service_account
        if not email:
            return Check(
                "service account", True, "none given: the steps run as Vertex AI's default service account"
            )
        response = self.get(f"https://iam.googleapis.com/v1/projects/-/serviceAccounts/{email}")
        if response.status_code == 404:
            name = email.split("@", 1)[0]
            return Check(
                "service account",
                False,
                f"{email} does not exist: run 'gcloud iam service-accounts create {name} --project {options.project}'",
            )
        if response.status_code != 200:
            return Check("service account", False, self._http_problem(response, email))
        if response.json().get("disabled"):
            return Check(
                "service account",
                False,
                f"{email} is disabled: run 'gcloud iam service-accounts enable {email} --project {options.project}'",
            )
        # Submitting a run that runs as another account needs iam.serviceAccounts.actAs on it
        # (serviceAccounts.testIamPermissions: https://cloud.google.com/iam/docs/reference/rest/v1/projects.serviceAccounts/testIamPermissions).
        url = f"https://iam.googleapis.com/v1/projects/-/serviceAccounts/{email}:testIamPermissions"
        allowed = self.session().post(
            google_url(url), json={"permissions": ["iam.serviceAccounts.actAs"]}, timeout=30
        )
        if allowed.status_code != 200 or "iam.serviceAccounts.actAs" not in allowed.json().get("permissions", []):
            return Check(
                "service account",
                False,
                f"{self.account or 'this account'} may not run jobs as {email} (iam.serviceAccounts.actAs): run "
                f"'gcloud iam service-accounts add-iam-policy-binding {email} --member={self.member()} "
                f"--role=roles/iam.serviceAccountUser --project {options.project}'",
            )
        return Check("service account", True, f"{email} exists, is enabled, and this account may act as it")

    def models(self) -> list[str]:
        """The Gemini models the config names."""
        config = self.options.config
        found = [getattr(config, name, "") for name in MODEL_FIELDS]
        return sorted({m for m in found if isinstance(m, str) and m.startswith("gemini")})

    def check_models(self) -> Check:
        """Each Gemini model answers a countTokens call in the region.

        Source: not billed: Vertex AI's get-token-count page, https://cloud.google.com/vertex-ai/generative-ai/docs/multimodal/get-token-count.
        """
        options = self.options
        models = self.models()
        if not models:
            return Check("models", True, "no Gemini model in the config", skipped=True)
        if self.genai_client is None:
            from tunekit.components.model_clients.vertex import make_genai_client

            self.genai_client = make_genai_client(options.project, options.region)
        problems = []
        for model in models:
            try:
                self.genai_client.models.count_tokens(model=model, contents="tunekit doctor")
            except Exception as exc:  # noqa: BLE001
                if getattr(exc, "code", None) == 404:
                    problems.append(
                        f"{model} is not served in {options.region}: pick a region that serves it "
                        "(https://cloud.google.com/vertex-ai/generative-ai/docs/learn/locations) or another model"
                    )
                else:
                    problems.append(f"{model}: {self._failure(exc)}")
        if problems:
            return Check("models", False, "; ".join(problems))
        return Check("models", True, f"served in {options.region}: {', '.join(models)}")

    def check_embedding_template(self) -> Check:
        """Every parameter tunekit sends Google's embedding tuning template is one the template declares.

        The template is read from Artifact Registry as kfp's RegistryClient downloads it (``HOST/PACKAGE/TAG``:
        kfp/registry/context/kfp_pkg_dev.json); aiplatform refuses undeclared parameters
        (google/cloud/aiplatform/utils/pipeline_utils.py).
        """
        import yaml

        from tunekit.components.tuning.embedding import vertex as embedding

        options = self.options
        config = options.config
        if getattr(options.method, "name", "") != "embedding-tuning" or getattr(config, "backend", "") != "vertex":
            return Check("embedding template", True, "not an embedding tuning run on Vertex", skipped=True)
        try:
            uri = embedding.template_uri(config.base_model)
            accepted = inspect.signature(embedding.build_parameter_values).parameters
            sent = embedding.build_parameter_values(
                **{name: getattr(config, name) for name in accepted if hasattr(config, name)}
            )
        except UserError as exc:
            return Check("embedding template", False, exc.message)
        response = self.get(uri)
        if response.status_code != 200:
            return Check("embedding template", False, self._http_problem(response, uri))
        spec = yaml.safe_load(response.text) or {}
        declared = set(((spec.get("root") or {}).get("inputDefinitions") or {}).get("parameters") or {})
        undeclared = sorted(set(sent) - declared)
        if undeclared:
            return Check(
                "embedding template",
                False,
                f"{uri} does not declare {', '.join(undeclared)}, which tunekit would send: Vertex would refuse the "
                "job; this is a tunekit bug to report (components/tuning/embedding/vertex.py DECLARED_PARAMETERS)",
            )
        return Check("embedding template", True, f"{uri} declares all {len(sent)} parameters tunekit sends")

    def open_models(self) -> list[str]:
        """The open models the config tunes with Vertex AI's managed tuning (``publisher/family@version``)."""
        from tunekit.components.tuning.gemini import is_open_model

        config = self.options.config
        found = set()
        for name, backend in OPEN_MODEL_FIELDS:
            value = getattr(config, name, "")
            if isinstance(value, str) and getattr(config, backend, "vertex") == "vertex" and is_open_model(value):
                found.add(value.strip())
        return sorted(found)

    def check_open_models(self) -> Check:
        """Each open model to tune is a documented id, tuned in the region, and offered there by Model Garden.

        Sources: the regions and ids of Google's "Tune an open model" page
        (https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/open-model-tuning, as
        ``tuning.gemini.OPEN_MODEL_REGIONS`` / ``OPEN_MODELS`` encode it), and Model Garden's publisher model GET
        on the region's endpoint, ``GET https://{region}-aiplatform.googleapis.com/v1beta1/publishers/{publisher}/models/{model}``
        (https://cloud.google.com/vertex-ai/docs/reference/rest/v1beta1/publishers.models/get; the name may end in
        ``@{version_id}``, as ExportPublisherModelResponse.publisher_model gives it): 404 for a model it does not offer.
        """
        from tunekit.components.tuning.gemini import OPEN_MODEL_REGIONS, check_open_model

        options = self.options
        models = self.open_models()
        if not models:
            return Check("open models", True, "no open model tuned on Vertex in the config", skipped=True)
        problems = []
        for model in models:
            try:
                check_open_model(model)
            except UserError as exc:
                problems.append(f"{exc.message}: fix the config's {exc.field or 'base_model'}")
                continue
            if options.region not in OPEN_MODEL_REGIONS:
                problems.append(
                    f"{model}: open-model tuning is offered in {' and '.join(OPEN_MODEL_REGIONS)} only, not "
                    f"{options.region} (Google's 'Tune an open model' page): pass --region "
                    f"{OPEN_MODEL_REGIONS[0]} or another listed region"
                )
                continue
            publisher, _, rest = model.partition("/")
            url = (
                f"https://{options.region}-aiplatform.googleapis.com/v1beta1/publishers/{publisher}/models/{rest}"
            )
            response = self.get(url)
            if response.status_code == 404:
                problems.append(
                    f"{model} is not offered by Model Garden in {options.region}: pick an id of the 'Tune an open "
                    "model' page (https://docs.cloud.google.com/vertex-ai/generative-ai/docs/models/open-model-tuning)"
                )
            elif response.status_code != 200:
                problems.append(self._http_problem(response, f"publisher model {model}"))
        if problems:
            return Check("open models", False, "; ".join(problems))
        return Check("open models", True, f"offered in {options.region}: {', '.join(models)}")

    def reward_row(self, needed: list[str]) -> tuple[dict, str]:
        """A row of the config's prompt dataset (Vertex's layout) and where it came from.

        The dataset's first row when it can be read; otherwise a prompt of :data:`SAMPLE_PROMPT` with each
        reference the rewards read left blank.

        Raises:
            UserError: The dataset was read and a row is bad (file, line, field).
        """
        from tunekit.components.common import uris
        from tunekit.components.data_validation.reinforcement import read_prompt_rows, vertex_row

        uri = getattr(self.options.config, "train_dataset_uri", "")
        reason = "no train_dataset_uri"
        if uri:
            try:
                with uris.local_copy(uri) as local:
                    if not os.path.exists(local):
                        raise FileNotFoundError(uri)
                    rows = read_prompt_rows(local, needed)
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001 - an unreadable dataset falls back to a sample row
                reason = f"{uri} could not be read ({type(exc).__name__})"
            else:
                if rows:
                    return vertex_row(rows[0]), f"the first row of {uri}"
                reason = f"{uri} has no rows"
        row = {
            "contents": [{"role": "user", "parts": [{"text": SAMPLE_PROMPT}]}],
            "references": {key: "" for key in needed},
        }
        return row, f"a sample row ({reason})"

    def check_rewards(self) -> Check:
        """A reinforcement run's reward file, as Vertex would score it: ``validate_reward`` on a row of the data.

        The reward module's own check (``tuning.rewards.load_rewards`` then ``check_backend("vertex")``), then
        ``tuning.reinforcement.vertex.validate_rewards`` of the row with an empty answer and each reference as the
        answer (docs/reinforcement_tuning.md, "For tunekit doctor"): ``client.tunings.validate_reward``, ``POST
        {parent}/tuningJobs:validateReinforcementTuningReward`` (https://docs.cloud.google.com/gemini-enterprise-agent-platform/reference/rest/v1beta1/projects.locations.tuningJobs/validateReinforcementTuningReward),
        a dry run that starts no job.
        """
        from tunekit.components.tuning.reinforcement.steps import sample_completions
        from tunekit.components.tuning.reinforcement.vertex import validate_rewards
        from tunekit.components.tuning.rewards import load_rewards

        options = self.options
        config = options.config
        uri = getattr(config, "reward_config_uri", "")
        if (
            getattr(options.method, "name", "") != "reinforcement-tuning"
            or getattr(config, "backend", "") != "vertex"
        ):
            return Check("rewards", True, "not a reinforcement tuning run on Vertex", skipped=True)
        if not uri:
            return Check(
                "rewards", False, "no reward_config_uri: set it to the reward file (docs/reinforcement_tuning.md)"
            )
        try:
            rewards = load_rewards(uri)
            rewards.check_backend("vertex")
            row, where = self.reward_row(rewards.references())
            texts = sample_completions(rewards, row)
            if self.genai_client is None:
                from tunekit.components.model_clients.vertex import make_genai_client

                self.genai_client = make_genai_client(options.project, options.region)
            values = validate_rewards(
                rewards,
                [row] * len(texts),
                texts,
                project=options.project,
                location=options.region,
                client=self.genai_client,
            )
        except UserError as exc:
            return Check(
                "rewards", False, f"{exc.format()}: fix the reward file or the data, then run doctor again"
            )
        scores = ", ".join(f"{v['overall']:g}" if _is_number(v.get("overall")) else "?" for v in values)
        return Check(
            "rewards",
            True,
            f"{len(rewards.rewards)} reward(s) of {uri} scored by Vertex's validate_reward on {where} "
            f"(overall {scores} for {len(texts)} sample answer(s))",
        )

    def check_cost(self) -> Check:
        """What the run's model calls cost per million tokens.

        Source: model_clients.pricing's list prices), and that tuning is billed apart; nothing here is a new price.
        """
        from tunekit.components.model_clients import pricing

        config = self.options.config
        models = self.models()
        if not models:
            return Check("cost", True, f"no Gemini calls priced; tuning and serving: {PRICING_PAGE}", skipped=True)
        try:
            prices = pricing.parse_price_table(getattr(config, "price_table", None))
        except UserError as exc:
            return Check("cost", False, f"{exc}: fix the config's price_table")
        parts = []
        for model in models:
            price = pricing.price_for(model, prices)
            parts.append(
                f"{model} ${price.input_per_million:g}/${price.output_per_million:g} per million input/output tokens"
                if price
                else f"{model} has no list price in tunekit"
            )
        return Check(
            "cost",
            True,
            f"{'; '.join(parts)} (list prices of {pricing.DEFAULT_PRICES_AS_OF}; batch at "
            f"{pricing.BATCH_DISCOUNT:g}x); tuning is billed per training token, not estimated here: {PRICING_PAGE}",
        )

    def run(self, echo: Callable[[str], None] | None = None) -> list[Check]:
        """Runs every check in order; returns them.

        Raises:
            UserError: An unknown region, or no usable credentials: nothing else can be checked then.
        """
        checks: list[Check] = []

        def add(check: Check) -> None:
            checks.append(check)
            if echo is not None:
                echo(check.line())

        from tunekit.pipelines.config import check_region

        check_region(self.options.region)
        credentials = self.check_credentials()
        if not credentials.ok:
            raise UserError(credentials.detail)
        add(credentials)
        ordered = [self.check_images, self.check_apis, self.check_pipeline_root, self.check_service_account]
        ordered += [self.check_models, self.check_open_models, self.check_embedding_template, self.check_rewards]
        ordered += [self.check_cost]
        for step in ordered:
            name = step.__name__.removeprefix("check_").replace("_", " ")
            try:
                add(step())
            except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check, not a traceback
                add(Check(name, False, self._failure(exc)))
        return checks


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def doctor(options: DoctorOptions, *, echo: Callable[[str], None] = print, **kwargs) -> list[Check]:
    """Runs the checks, printing one line each; returns them."""
    return Doctor(options, **kwargs).run(echo)


def failed(checks: list[Check]) -> list[Check]:
    """The checks that failed (skipped ones do not count)."""
    return [c for c in checks if not c.ok and not c.skipped]


def job_spec_text(job) -> str:
    """The pipeline spec an ``aiplatform.PipelineJob`` carries, as YAML (what the run's executors will pull)."""
    import yaml
    from google.protobuf import json_format

    return yaml.safe_dump(json_format.MessageToDict(job._gca_resource._pb.pipeline_spec))


def preflight(method, config, submit_options, *, job=None, echo: Callable[[str], None] = print, **kwargs) -> None:
    """The doctor run of ``submit`` and ``schedule create``; raises when a check failed.

    ``job`` (the ``PipelineJob`` just built) gives the spec whose images are checked, so nothing is compiled or
    downloaded twice.

    Raises:
        UserError: Naming the failed checks (their lines were printed above it) and ``--skip-doctor``.
    """
    options = DoctorOptions(
        project=submit_options.project,
        region=submit_options.region,
        method=method,
        config=config,
        image=submit_options.image,
        template=submit_options.template_path,
        pipeline_root=submit_options.pipeline_root,
        service_account=submit_options.service_account,
        spec_text=job_spec_text(job) if job is not None else "",
    )
    bad = failed(doctor(options, echo=echo, **kwargs))
    if bad:
        raise UserError(
            f"doctor: {', '.join(c.name for c in bad)} failed (see above); fix them, or add --skip-doctor to submit anyway"
        )
