"""What the program builds, computed from the model without Pulumi: facts, stack outputs, GeoDNS record sets, cost,
rollout waves and the certificate's IAM policies. The program, the policy pack, the CLI and the lab share them."""
