"""The Lambda Cloud driver (registered as "lambda"; the package is lambda_cloud because `lambda` is a
Python keyword): on-demand GPU VMs from Lambda's Cloud API 1.10, each running the engine container
from a cloud-init script, reached at its public IP, behind a Lambda firewall ruleset of ours."""
