variable "enabled" {
  description = "Whether to create the bastion at all."
  type        = bool
  default     = true
}

variable "cluster_name" {
  type = string
}

variable "vpc_id" {
  type = string
}

variable "subnet_id" {
  description = "A public subnet of the VPC."
  type        = string
}

variable "allowed_cidrs" {
  description = "The only sources SSH is accepted from."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "allowed_cidrs must be IPv4 CIDRs."
  }
}

variable "instance_type" {
  type    = string
  default = "t3.micro"
}

variable "key_name" {
  description = "EC2 key pair for SSH; empty for none (access through SSM or an injected key)."
  type        = string
  default     = ""
}

variable "mode" {
  description = "\"ssh\": port 22 from allowed_cidrs; \"ssm\": Session Manager only, no ingress at all."
  type        = string
  default     = "ssh"
}
