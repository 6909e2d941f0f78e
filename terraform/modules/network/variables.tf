variable "cluster_name" {
  description = "Cluster the network serves; used in names and in the tags CAPA looks for."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's IPv4 CIDR; subnets are carved from it."
  type        = string

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0))
    error_message = "vpc_cidr must be an IPv4 CIDR such as 10.20.0.0/16."
  }
}

variable "zones" {
  description = "Availability zones, one public and one private subnet each; order fixes the CIDRs."
  type        = list(string)

  validation {
    condition     = length(var.zones) >= 1 && length(var.zones) <= 8
    error_message = "zones must list between 1 and 8 availability zones."
  }
}

variable "nat_gateways" {
  description = "\"single\": one NAT gateway for all private subnets; \"per-zone\": one per zone."
  type        = string
  default     = "single"

  validation {
    condition     = contains(["single", "per-zone"], var.nat_gateways)
    error_message = "nat_gateways must be \"single\" or \"per-zone\"."
  }
}

variable "endpoints" {
  description = "VPC endpoint services by short name (s3, sts, ecr.api, ...)."
  type        = list(string)
  default     = []
}

variable "flow_log_retention_days" {
  description = "Days CloudWatch Logs keeps the VPC's flow logs."
  type        = number
  default     = 365
}

variable "logs_kms_key_arn" {
  description = "The KMS key that encrypts the flow logs' log group."
  type        = string
}
