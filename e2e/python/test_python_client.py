"""The Python `kubernetes` client against our apiserver: list, create, update and watch
pods and deployments on both storage backends, the 410 a too-old watch gets, and custom
resources through `CustomObjectsApi`. The server is secure as a user runs it: TLS with
kubeadm's certificates, the client authenticated by the admin kubeconfig's certificate;
a client without credentials gets 401."""

import os
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import kubernetes.config
import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / "target" / "debug" / "kube-apiserver"
KUBEADM = ROOT / "target" / "debug" / "kubeadm"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backends():
    out = ["embedded"]
    if os.environ.get("ETCD_ENDPOINTS"):
        out.append("etcd")
    elif os.environ.get("CI") == "true":
        raise RuntimeError("CI=true but ETCD_ENDPOINTS is not set: the test command must start etcd")
    else:
        print("skipping the etcd backend: ETCD_ENDPOINTS is not set (./test.sh starts etcd)")
    return out


def certificates(data, url):
    """kubeadm's CA, the apiserver's certificate and admin.conf, in `data`; the TLS flags."""
    pki = Path(data) / "pki"
    subprocess.run([str(KUBEADM), "init", "phase", "certs", "--cert-dir", str(pki)], check=True, capture_output=True)
    subprocess.run(
        [str(KUBEADM), "init", "phase", "kubeconfig", "--cert-dir", str(pki), "--kubeconfig-dir", data,
         "--control-plane-endpoint", url],
        check=True,
        capture_output=True,
    )
    return [
        "--tls-cert-file", str(pki / "apiserver.crt"), "--tls-private-key-file", str(pki / "apiserver.key"),
        "--client-ca-file", str(pki / "ca.crt"),
    ]


@pytest.fixture(params=backends())
def api(request):
    assert BINARY.exists() and KUBEADM.exists(), f"{BINARY} or {KUBEADM} is not built: run cargo build first"
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        url = f"https://127.0.0.1:{port}"
        args = [str(BINARY), "--port", str(port), "--data-dir", data, "--watch-cache-size", "50"]
        args += certificates(data, url)
        if request.param == "etcd":
            args += ["--etcd-servers", os.environ["ETCD_ENDPOINTS"], "--etcd-prefix", f"/py-{uuid.uuid4()}"]
        log = open(Path(data) / "apiserver.log", "w")
        proc = subprocess.Popen(args, stdout=log, stderr=log)
        try:
            tls = ssl.create_default_context(cafile=str(Path(data) / "pki" / "ca.crt"))
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/readyz", timeout=1, context=tls)
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                raise RuntimeError("apiserver did not become ready")
            config = client.Configuration()
            kubernetes.config.load_kube_config(config_file=str(Path(data) / "admin.conf"), client_configuration=config)
            anonymous = client.Configuration()
            anonymous.host = url
            anonymous.ssl_ca_cert = str(Path(data) / "pki" / "ca.crt")
            api_client = client.ApiClient(config)
            api_client.anonymous = client.ApiClient(anonymous)
            yield api_client
        finally:
            proc.kill()
            proc.wait()
            log.close()


def pod(name, labels=None):
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1")]),
    )


def deployment(name, replicas):
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="web:1")]),
            ),
        ),
    )


def test_pods_create_list_update_delete(api):
    core = client.CoreV1Api(api)
    created = core.create_namespaced_pod("default", pod("web-1", {"app": "web"}))
    assert created.metadata.uid
    assert created.spec.restart_policy == "Always"
    pods = core.list_namespaced_pod("default", label_selector="app=web")
    assert [p.metadata.name for p in pods.items] == ["web-1"]
    assert pods.metadata.resource_version
    created.metadata.labels["tier"] = "front"
    updated = core.replace_namespaced_pod("web-1", "default", created)
    assert updated.metadata.labels["tier"] == "front"
    stale = created
    stale.metadata.labels["tier"] = "back"
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_pod("web-1", "default", stale)
    assert err.value.status == 409
    core.delete_namespaced_pod("web-1", "default")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("web-1", "default")
    assert err.value.status == 404


def test_deployments_create_scale_patch(api):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", deployment("web", 2))
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 4}})
    d = apps.read_namespaced_deployment("web", "default")
    assert d.spec.replicas == 4
    assert d.metadata.generation == 2
    assert d.spec.strategy.rolling_update.max_surge == "25%"
    apps.patch_namespaced_deployment("web", "default", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "web:2"}]}}}})
    assert apps.read_namespaced_deployment("web", "default").spec.template.spec.containers[0].image == "web:2"
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("default", deployment("Bad_Name", 1))
    assert err.value.status == 422


def test_watch_pods_and_deployments(api):
    core = client.CoreV1Api(api)
    apps = client.AppsV1Api(api)
    rv = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod("a"))
    core.patch_namespaced_pod("a", "default", {"metadata": {"labels": {"x": "1"}}})
    core.delete_namespaced_pod("a", "default")
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_pod, "default", resource_version=rv, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]

    drv = apps.list_namespaced_deployment("default").metadata.resource_version
    apps.create_namespaced_deployment("default", deployment("w", 1))
    for event in watch.Watch().stream(apps.list_namespaced_deployment, "default", resource_version=drv, timeout_seconds=2):
        assert event["type"] == "ADDED"
        assert event["object"].spec.replicas == 1
        break
    else:
        pytest.fail("no deployment event")


def test_watch_from_a_compacted_version_raises_410(api):
    core = client.CoreV1Api(api)
    first = core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c")))
    for i in range(60):
        core.patch_namespaced_config_map("c", "default", {"data": {"i": str(i)}})
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=first.metadata.resource_version, timeout_seconds=2
        ):
            pass
    assert err.value.status == 410


def crontab_definition():
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab"},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "cronSpec": {"type": "string"},
                        "replicas": {"type": "integer", "minimum": 1, "default": 1},
                    }},
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                }}},
                "subresources": {"status": {}, "scale": {
                    "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
            }],
        },
    }


def test_custom_objects(api):
    extensions = client.ApiextensionsV1Api(api)
    extensions.create_custom_resource_definition(crontab_definition())
    for _ in range(200):
        crd = extensions.read_custom_resource_definition("crontabs.stable.example.com")
        if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the CRD was never Established")

    objects = client.CustomObjectsApi(api)
    args = ("stable.example.com", "v1", "default", "crontabs")
    body = {"apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "nightly"}, "spec": {"cronSpec": "0 3 * * *", "unknown": 1}}
    created = objects.create_namespaced_custom_object(*args, body)
    assert created["spec"] == {"cronSpec": "0 3 * * *", "replicas": 1}
    listed = objects.list_namespaced_custom_object(*args)
    assert [o["metadata"]["name"] for o in listed["items"]] == ["nightly"]
    objects.patch_namespaced_custom_object_scale(*args, "nightly", {"spec": {"replicas": 3}})
    assert objects.get_namespaced_custom_object(*args, "nightly")["spec"]["replicas"] == 3
    objects.patch_namespaced_custom_object_status(*args, "nightly", {"status": {"replicas": 3}})
    assert objects.get_namespaced_custom_object_scale(*args, "nightly")["status"]["replicas"] == 3
    with pytest.raises(ApiException) as err:
        objects.patch_namespaced_custom_object(*args, "nightly", {"spec": {"replicas": 0}})
    assert err.value.status == 422
    assert "spec.replicas in body should be greater than or equal to 1" in err.value.body

    extensions.delete_custom_resource_definition("crontabs.stable.example.com")
    for _ in range(200):
        try:
            objects.list_namespaced_custom_object(*args)
        except ApiException as e:
            assert e.status == 404
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the resource is still served after its CRD was deleted")


def test_a_client_without_credentials_is_refused(api):
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api.anonymous).list_namespaced_pod("default")
    assert refused.value.status == 401
    me = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
    assert me.status.user_info.username == "kubernetes-admin"
    assert "system:masters" in me.status.user_info.groups
