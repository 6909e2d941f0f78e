output "region" {
  value = var.region
}

output "vpc_id" {
  value = module.network.vpc_id
}

output "vpc_cidr" {
  value = module.network.vpc_cidr
}

output "subnets" {
  value = module.network.subnets
}

output "nat_gateway_ids" {
  value = module.network.nat_gateway_ids
}

output "endpoint_ids" {
  value = module.network.endpoint_ids
}

output "bastion" {
  value = module.bastion.bastion
}

output "secrets_key_arn" {
  description = "The KMS key of the cluster's Secrets: an identifier, no key material."
  value       = aws_kms_key.secrets.arn
}

output "audit_log_group" {
  value = aws_cloudwatch_log_group.audit.name
}

output "flow_log_id" {
  value = module.network.flow_log_id
}
