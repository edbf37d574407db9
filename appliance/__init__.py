"""vodedge appliance: the edge cache daemon players fetch HLS/DASH from."""
