"""vodedge origin: serves published files to appliances (encode pipeline to come)."""
