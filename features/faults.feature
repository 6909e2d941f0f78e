Feature: A run stopped in the middle of terraform apply loses nothing
  A kill gives Terraform no chance to save: whatever it created but had not
  saved yet, and the lock it held, are each named by the next run with the
  one command that clears it, which asks nothing: it works in CI, with no
  terminal. Ctrl-C lets Terraform stop cleanly: it saves the state and
  releases the lock. Either way the next runs pick up where the stopped one
  left off, and the cluster ends with exactly one VPC.

  Scenario: A run killed mid-apply, then one stopped by Ctrl-C: the next runs finish the cluster
    Given a spec for "stray" with 0 replicas in pool "default"
    When new-cluster "stray" is killed with its process group as Terraform creates its VPC
    Then the journal says the run of "stray" was interrupted at stage network
    When I run new-cluster "stray", running each command a blocked run names, until the state lock blocks it
    Then the lock error names the unlock of that very lock of "stray", with --force as the lock is young
    When I run that unlock command without its --force, with stdin closed
    Then it is refused in one line, and the lock of "stray" is still held
    When I run that unlock command exactly as printed, with stdin closed
    Then it released the lock of "stray"
    When I run new-cluster "stray", running each command a blocked run names, and press Ctrl-C once Terraform has created its VPC
    Then the first run after the killed one said it resumes from stage network
    And the run stops with exit code 130 and says it was interrupted
    And the state of "stray" holds the VPC and no lock is left
    And the journal says the run of "stray" was interrupted at stage network
    When I run new-cluster "stray" until it succeeds, running each command a blocked run names
    Then every blocked run named what blocks it and one command that clears it
    And the account holds exactly one VPC for "stray", the one its manifests name
