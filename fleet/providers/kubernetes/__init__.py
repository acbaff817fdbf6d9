"""The kubernetes driver: each instance is a Deployment (one replica), a Service and a Secret in
one namespace of an operator's cluster, labelled with the fleet tag and our instance id (a pod adds a
Service for its TCP ports); each volume a PersistentVolumeClaim there, labelled likewise.

Modules: `api` is the one seam to the cluster (timeouts, retry policy, error mapping),
`options` parses the provider's config, `manifests` builds the objects, `capacity` turns nodes
and pods into offers, `volumes` keeps the claims, `driver` puts them together behind the Driver contract.

RBAC the platform's credentials need: list nodes; list pods in all namespaces (free GPUs); in its
namespace create/get/list/delete deployments, services and secrets, list pods and get pods/log, and
create/get/list/patch/delete persistentvolumeclaims.
"""
