"""The one base class of the pipeline's expected errors (bad params, data, downloads).

Stages catch it to print a one-line message instead of a traceback.
"""


class PipelineError(Exception):
    """An error whose message alone tells the user what to fix."""
