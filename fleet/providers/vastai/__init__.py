"""The Vast.ai driver: GPU containers rented from Vast's marketplace of hosts' offers ("asks"), over
Vast's REST API (https://console.vast.ai, configurable). See driver.py for the contract's mapping."""
