"""schemathesis hooks for fuzz/http.sh: the one check it runs.

Every 5xx is a failure, except the answer upstream's apiserver gives, and clients expect,
to a list whose resourceVersion is newer than anything stored: after waiting for it, a
504 whose cause is ResourceVersionTooLarge (client-go's reflector reads that cause and
lists again).
"""

import schemathesis


def _upstreams_too_large_resource_version(response):
    if response.status_code != 504:
        return False
    try:
        body = response.json()
    except Exception:
        return False
    causes = (body.get("details") or {}).get("causes") or []
    return body.get("reason") == "Timeout" and any(c.get("reason") == "ResourceVersionTooLarge" for c in causes)


@schemathesis.check
def no_server_error(ctx, response, case):
    if response.status_code >= 500 and not _upstreams_too_large_resource_version(response):
        raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")
