"""Line stations: listeners that speak the protocols line equipment already uses."""
