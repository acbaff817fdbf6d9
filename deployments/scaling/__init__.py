"""Autoscaling of a deployment, in three modules:

settings.py    what the user set (min, max, scale to zero, idle timeout, metric and target):
               read and changed with every bound checked (the API and the page's form)
policy.py      the decision: a pure function of the settings, the measured load and the
               streaks; this is what decides scaling
autoscaler.py  the periodic round (beat): measure each running deployment, ask the policy,
               apply its answer through deployments.services
"""
