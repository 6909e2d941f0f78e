output "bastion" {
  description = "{instance_id, security_group_id, public_ip}, or null when disabled."
  value = var.enabled ? {
    instance_id       = aws_instance.bastion[0].id
    security_group_id = aws_security_group.bastion[0].id
    public_ip         = aws_eip.bastion[0].public_ip
  } : null
}
