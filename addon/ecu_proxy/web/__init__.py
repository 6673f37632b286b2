"""The add-on's web page: live plant view, setup self-check and frame inspector."""
