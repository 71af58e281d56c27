"""What the tuning tests share: the example data, where the steps' Vertex jobs run in the fake, what they sent."""

import os

#: The repository's example datasets.
EXAMPLES_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data")

#: A step's Vertex arguments against the fake Vertex API: its project and region, and a quick poll.
ON_FAKE_VERTEX = {"project": "test-project", "location": "us-central1", "poll_interval_s": 0.01}


def created_jobs(fake) -> list[dict]:
    """The bodies of the tuning-job create calls the fake received, in order."""
    return [body for _, _, body in fake.requests_to(r"/tuningJobs(\?|$)", "POST")]
