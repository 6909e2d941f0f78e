output "vpc_id" {
  value = aws_vpc.this.id
}

output "vpc_cidr" {
  value = aws_vpc.this.cidr_block
}

output "subnets" {
  description = "Every subnet as {id, cidr, zone, public}, public ones first, each group in zone order."
  value = concat(
    [for zone in var.zones : {
      id     = aws_subnet.public[zone].id
      cidr   = aws_subnet.public[zone].cidr_block
      zone   = zone
      public = true
    }],
    [for zone in var.zones : {
      id     = aws_subnet.private[zone].id
      cidr   = aws_subnet.private[zone].cidr_block
      zone   = zone
      public = false
    }],
  )
}

output "public_subnet_ids" {
  value = [for zone in var.zones : aws_subnet.public[zone].id]
}

output "nat_gateway_ids" {
  value = [for zone in local.nat_zones : aws_nat_gateway.this[zone].id]
}

output "endpoint_ids" {
  description = "Service short name to VPC endpoint id."
  value = merge(
    { for name, ep in aws_vpc_endpoint.gateway : name => ep.id },
    { for name, ep in aws_vpc_endpoint.interface : name => ep.id },
  )
}

output "flow_log_id" {
  value = aws_flow_log.this.id
}
