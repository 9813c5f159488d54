provider "aws" {
  region = var.region
}

locals {
  name = "crypto-lakehouse-${var.environment}"
  azs  = slice(data.aws_availability_zones.available.names, 0, 3)
  common_tags = {
    project     = "crypto-lakehouse"
    environment = var.environment
    managed-by  = "terraform"
  }
}

data "aws_availability_zones" "available" {
  state = "available"
}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "~> 5.16"

  name            = local.name
  cidr            = var.vpc_cidr
  azs             = local.azs
  private_subnets = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 4, i)]
  public_subnets  = [for i, _ in local.azs : cidrsubnet(var.vpc_cidr, 8, 48 + i)]

  enable_nat_gateway   = true
  single_nat_gateway   = false
  enable_dns_hostnames = true
  enable_dns_support   = true

  public_subnet_tags  = { "kubernetes.io/role/elb" = 1 }
  private_subnet_tags = { "kubernetes.io/role/internal-elb" = 1 }

  tags = local.common_tags
}

# The same four node groups as deploy/eks/cluster.yaml.
module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "~> 20.31"

  cluster_name                   = local.name
  cluster_version                = var.kubernetes_version
  cluster_endpoint_public_access = true
  enable_irsa                    = true
  # v20 manages access through EKS access entries: without this, the identity running
  # Terraform is not a cluster admin and every helm_release below is Unauthorized.
  enable_cluster_creator_admin_permissions = true

  vpc_id     = module.vpc.vpc_id
  subnet_ids = module.vpc.private_subnets

  cluster_enabled_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  cluster_addons = {
    # The VPC CNI enforces NetworkPolicies only with its network policy agent turned on;
    # without it every policy in deploy/k8s is accepted and ignored. before_compute: the
    # setting is in place before the first node joins.
    vpc-cni = {
      before_compute       = true
      configuration_values = jsonencode({ enableNetworkPolicy = "true" })
    }
    coredns    = {}
    kube-proxy = {}
    aws-ebs-csi-driver = {
      service_account_role_arn = module.ebs_csi_irsa.iam_role_arn
    }
  }

  # The module gives each node group its own launch template, and EKS ignores `disk_size`
  # when one is used: root volumes are sized through block_device_mappings instead
  # (otherwise 20 GiB, and the executor's 100 Gi ephemeral request never schedules).
  eks_managed_node_group_defaults = {
    ami_type = "AL2023_x86_64_STANDARD"
    block_device_mappings = {
      root = {
        device_name = "/dev/xvda"
        ebs         = { volume_size = 100, volume_type = "gp3", encrypted = true, delete_on_termination = true }
      }
    }
  }

  eks_managed_node_groups = {
    system = {
      instance_types = ["m5.large"]
      min_size       = 2
      max_size       = 3
      desired_size   = 2
      labels         = { workload = "system" }
      block_device_mappings = {
        root = {
          device_name = "/dev/xvda"
          ebs         = { volume_size = 50, volume_type = "gp3", encrypted = true, delete_on_termination = true }
        }
      }
      taints = {
        critical = { key = "CriticalAddonsOnly", value = "true", effect = "NO_SCHEDULE" }
      }
    }

    general_workload = {
      instance_types = ["m5.xlarge"]
      min_size       = 3
      max_size       = 10
      desired_size   = 3
      labels         = { workload = "general" }
    }

    data_intensive = {
      instance_types = ["c5n.2xlarge"]
      min_size       = 2
      max_size       = 8
      desired_size   = 2
      labels         = { workload = "data-intensive" }
      # Staging emptyDirs (100 Gi per executor) live on the root volume.
      block_device_mappings = {
        root = {
          device_name = "/dev/xvda"
          ebs         = { volume_size = 500, volume_type = "gp3", encrypted = true, delete_on_termination = true }
        }
      }
      taints = {
        workload = { key = "workload", value = "data-intensive", effect = "NO_SCHEDULE" }
      }
    }

    storage_nodes = {
      instance_types = [var.storage_instance_type]
      min_size       = 4
      max_size       = 4
      desired_size   = 4
      labels         = { workload = "storage" }
      taints = {
        workload = { key = "workload", value = "storage", effect = "NO_SCHEDULE" }
      }
      block_device_mappings = {
        root = {
          device_name = "/dev/xvda"
          ebs         = { volume_size = 50, volume_type = "gp3", encrypted = true, delete_on_termination = true }
        }
      }
      # The NVMe instance store becomes the LVM volume group OpenEBS provisions from. AL2023
      # nodes boot with nodeadm, which ignores pre_bootstrap_user_data: the script is a
      # cloud-init part that runs before nodeadm. It picks instance-store disks by their
      # NVMe model, never by name (on Nitro types the EBS root is /dev/nvme0n1).
      cloudinit_pre_nodeadm = [{
        content_type = "text/x-shellscript; charset=\"us-ascii\""
        content      = file("${path.module}/files/minio-nvme-vg.sh")
      }]
    }
  }

  tags = local.common_tags
}

module "ebs_csi_irsa" {
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "~> 5.48"

  role_name             = "${local.name}-ebs-csi"
  attach_ebs_csi_policy = true

  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["kube-system:ebs-csi-controller-sa"]
    }
  }

  tags = local.common_tags
}
