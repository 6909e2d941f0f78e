Feature: A run stopped in the middle of terraform apply loses nothing
  Ctrl-C lets Terraform stop cleanly: it saves the state and releases the
  lock. A kill gives it no such chance. Either way, whatever was created but
  not saved, and any lock left held, are named by the next run with the one
  command that clears each, and the cluster ends with exactly one VPC.

  Scenario: Ctrl-C during apply saves the state, and the next runs finish the cluster
    Given a spec for "calm" with 0 replicas in pool "default"
    When I press Ctrl-C on new-cluster "calm" once Terraform has created its VPC
    Then the run stops with exit code 130 and says it was interrupted
    And the state of "calm" holds the VPC and no lock is left
    And the journal says the run of "calm" was interrupted at stage network
    When I run new-cluster "calm" until it succeeds, running each command a blocked run names
    Then the first run after the interrupted one said it resumes from stage network
    And every blocked run named what blocks it and one command that clears it
    And the account holds exactly one VPC for "calm", the one its manifests name

  Scenario: A run killed during apply is finished by the next runs
    Given a spec for "stray" with 0 replicas in pool "default"
    When new-cluster "stray" is killed with its process group once Terraform has created its VPC
    Then the journal says the run of "stray" was interrupted at stage network
    When I run new-cluster "stray" until it succeeds, running each command a blocked run names
    Then the first run after the interrupted one said it resumes from stage network
    And every blocked run named what blocks it and one command that clears it
    And the account holds exactly one VPC for "stray", the one its manifests name
