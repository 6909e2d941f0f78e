variable "cluster_name" {
  type = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,38}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 2-40 lowercase letters, digits and hyphens."
  }
}

variable "region" {
  type = string
}

variable "vpc_cidr" {
  type = string
}

variable "zones" {
  description = "Availability zones to use, in the order that fixes their subnets' CIDRs."
  type        = list(string)
}

variable "nat_gateways" {
  type    = string
  default = "single"
}

variable "endpoints" {
  type    = list(string)
  default = []
}

variable "bastion_enabled" {
  type    = bool
  default = false
}

variable "bastion_allowed_cidrs" {
  type    = list(string)
  default = []
}

variable "bastion_instance_type" {
  type    = string
  default = "t3.micro"
}

variable "bastion_mode" {
  description = "\"ssh\": port 22 from bastion_allowed_cidrs; \"ssm\": Session Manager only, no port open."
  type        = string
  default     = "ssh"

  validation {
    condition     = contains(["ssh", "ssm"], var.bastion_mode)
    error_message = "bastion_mode must be \"ssh\" or \"ssm\"."
  }
}

variable "flow_log_retention_days" {
  type    = number
  default = 365
}

variable "audit_log_retention_days" {
  type    = number
  default = 365
}

variable "control_plane_role_name" {
  description = "The account's control-plane IAM role (the account stack's), the only one that may use the Secrets key."
  type        = string
}

variable "ssh_key_name" {
  type    = string
  default = ""
}

variable "tags" {
  description = "Tags for every resource, on top of the cluster's own."
  type        = map(string)
  default     = {}
}

variable "aws_endpoint" {
  description = "One AWS-compatible endpoint for every service (the local target); null for AWS itself."
  type        = string
  default     = null
}

variable "aws_max_retries" {
  description = "How often the AWS provider retries a throttled or failing call before giving up (provider default: 25)."
  type        = number
  default     = 5

  validation {
    condition     = var.aws_max_retries >= 0 && var.aws_max_retries <= 25 && floor(var.aws_max_retries) == var.aws_max_retries
    error_message = "aws_max_retries must be a whole number from 0 to 25."
  }
}
