"""Records (the one data format), converters, synthetic defects and prompts."""
