variable "region" {
  description = "The region the provider talks to; IAM itself is global."
  type        = string
}

variable "control_plane_name" {
  type = string
}

variable "nodes_name" {
  type = string
}

variable "inputs_digest" {
  description = "A digest of this stack and its variables, kept as an output so a run can tell, without Terraform, that nothing changed."
  type        = string
}

variable "tags" {
  type    = map(string)
  default = {}
}

variable "aws_endpoint" {
  description = "One AWS-compatible endpoint for every service (the local target); null for AWS itself."
  type        = string
  default     = null
}

variable "aws_max_retries" {
  type    = number
  default = 5
}
