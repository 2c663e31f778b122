"""Static checks of the deployment files."""
