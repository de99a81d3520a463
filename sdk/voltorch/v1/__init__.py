"""Generated code for the voltorch.v1 API (make protos). Do not edit."""
