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
