"""Static admin console, served by the gateway at /console."""
