"""Credentials, permission and quota errors of the Google clients become one UserError line with what to run."""

import pytest
from google.api_core import exceptions as core
from google.auth import exceptions as auth
from google.genai import errors as genai_errors

from tunekit.components.common.errors import UserError, cloud_user_error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (auth.DefaultCredentialsError("File /nowhere was not found."), "gcloud auth application-default login"),
        (auth.RefreshError("invalid_grant: Token has been expired or revoked."), "application-default login"),
        (core.Unauthenticated("Request had invalid authentication credentials."), "application-default login"),
        (
            core.PermissionDenied(
                "Vertex AI API has not been used in project p before or it is disabled. SERVICE_DISABLED "
                "aiplatform.googleapis.com"
            ),
            "gcloud services enable aiplatform.googleapis.com --project p",
        ),
        (
            core.Forbidden("Permission 'aiplatform.pipelineJobs.create' denied on resource"),
            "gcloud projects add-iam-policy-binding p --member=user:ACCOUNT --role=roles/aiplatform.user",
        ),
        (
            core.ResourceExhausted("Quota exceeded for aiplatform.googleapis.com/custom_model_training"),
            "quotas?project=p",
        ),
        (
            genai_errors.ClientError(
                403, {"error": {"code": 403, "message": "Permission denied", "status": "PERMISSION_DENIED"}}
            ),
            "add-iam-policy-binding p",
        ),
        (
            genai_errors.ClientError(
                429, {"error": {"code": 429, "message": "Resource exhausted", "status": "RESOURCE_EXHAUSTED"}}
            ),
            "quotas?project=p",
        ),
    ],
)
def test_each_error_is_one_line_with_the_command_that_fixes_it(error, expected):
    translated = cloud_user_error(error, project="p")
    assert isinstance(translated, UserError)
    assert expected in str(translated) and "\n" not in str(translated)


def test_a_wrapped_error_is_found_through_its_cause_and_others_are_left_alone():
    try:
        try:
            raise auth.DefaultCredentialsError("no ADC")
        except auth.DefaultCredentialsError as inner:
            raise RuntimeError("aiplatform could not initialise") from inner
    except RuntimeError as outer:
        assert "application-default login" in str(cloud_user_error(outer))
    assert cloud_user_error(ValueError("a bug")) is None
    assert cloud_user_error(core.NotFound("no such job")) is None
    assert cloud_user_error(genai_errors.ClientError(400, {"error": {"message": "bad"}})) is None
