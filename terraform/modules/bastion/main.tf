data "aws_ami" "al2023" {
  count = var.enabled ? 1 : 0

  most_recent = true
  owners      = ["amazon"]

  filter {
    name   = "name"
    values = ["al2023-ami-*-x86_64"]
  }
}

resource "aws_security_group" "bastion" {
  count = var.enabled ? 1 : 0

  name        = "${var.cluster_name}-bastion"
  description = var.mode == "ssh" ? "SSH to the bastion from the allowed CIDRs only" : "No ingress: Session Manager only"
  vpc_id      = var.vpc_id

  tags = {
    Name = "${var.cluster_name}-bastion"
  }
}

# Separate rules rather than inline blocks so a changed CIDR list replaces only its rule.
resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = var.enabled && var.mode == "ssh" ? toset(var.allowed_cidrs) : toset([])

  security_group_id = aws_security_group.bastion[0].id
  description       = "SSH"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = each.key
}

resource "aws_vpc_security_group_egress_rule" "all" {
  count = var.enabled ? 1 : 0

  security_group_id = aws_security_group.bastion[0].id
  description       = "Onward connections into the cluster and out for updates"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_instance" "bastion" {
  count = var.enabled ? 1 : 0

  ami                    = data.aws_ami.al2023[0].id
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [aws_security_group.bastion[0].id]
  key_name               = var.key_name == "" || var.mode == "ssm" ? null : var.key_name
  iam_instance_profile   = var.mode == "ssm" ? aws_iam_instance_profile.ssm[0].name : null

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }

  root_block_device {
    encrypted   = true
    volume_size = 8
    volume_type = "gp3"
  }

  tags = {
    Name = "${var.cluster_name}-bastion"
  }

  lifecycle {
    # A newer AMI must not replace a running bastion on every plan.
    ignore_changes = [ami]
  }
}

# An Elastic IP rather than an auto-assigned address: it survives a stop/start, so the
# allow-lists that name the bastion stay valid.
resource "aws_eip" "bastion" {
  count = var.enabled ? 1 : 0

  domain   = "vpc"
  instance = aws_instance.bastion[0].id

  tags = {
    Name = "${var.cluster_name}-bastion"
  }
}

# Session Manager instead of SSH: the agent on the instance calls out, nothing calls in.
resource "aws_iam_role" "ssm" {
  count = var.enabled && var.mode == "ssm" ? 1 : 0

  name = "${var.cluster_name}-bastion-ssm"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "ec2.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "ssm" {
  count = var.enabled && var.mode == "ssm" ? 1 : 0

  role       = aws_iam_role.ssm[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "ssm" {
  count = var.enabled && var.mode == "ssm" ? 1 : 0

  name = "${var.cluster_name}-bastion-ssm"
  role = aws_iam_role.ssm[0].name
}

data "aws_partition" "current" {}
