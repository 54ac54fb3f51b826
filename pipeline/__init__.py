"""gemcurate: scheduled, versioned, validated image datasets from online catalogs."""
