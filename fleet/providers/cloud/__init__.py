"""What the GPU cloud drivers (runpod, vastai, lambda_cloud, digitalocean) share: the HTTP client with
the error mapping (api), their common configuration and pricing (options), and the map from each
cloud's GPU names to the catalog's slugs (gpus)."""
