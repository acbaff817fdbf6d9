"""DigitalOcean GPU droplets (driver.py), through pydo, DigitalOcean's official client (api.py): sizes
as offers (sizes.py), droplets as instances (droplets.py), a Cloud Firewall by tag (firewall.py)."""
